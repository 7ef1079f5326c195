//! The records of an import file, read one at a time: JSON Lines (one object a line) or CSV
//! (a header row naming the same fields). A record that cannot be read is refused with its
//! line number and the rest go on; nothing is held in memory beyond the current batch.

use std::io::{BufRead, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::super::*;

/// How an import file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON object a line.
    Jsonl,
    /// Comma-separated values with a header row.
    Csv,
}

impl Format {
    /// The format a file's name suggests: `.csv` is CSV, anything else (stdin too) JSON Lines.
    pub(super) fn of(file: &std::path::Path) -> Format {
        match file.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => Format::Csv,
            _ => Format::Jsonl,
        }
    }
}

/// The columns a CSV file may have; the first five are required.
const CSV_COLUMNS: [&str; 12] = [
    "sha256",
    "prefix",
    "account_id",
    "name",
    "environment",
    "scopes",
    "preset",
    "grant_all",
    "expires_at",
    "created_at",
    "last_used_at",
    "rate_limit",
];

/// One record of an import file, as JSON Lines spell it.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportLine {
    sha256: String,
    prefix: String,
    account_id: String,
    name: String,
    environment: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    preset: Option<String>,
    #[serde(default)]
    grant_all: bool,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    last_used_at: Option<String>,
    /// The key's own rate limit, e.g. `{"limit": 100, "window": "2m"}`.
    #[serde(default)]
    rate_limit: Option<ImportRateLimit>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportRateLimit {
    limit: u32,
    window: String,
}

/// One CSV row: every cell text, empty meaning absent. `scopes` are separated by spaces,
/// `grant_all` is `true` or `false`, `rate_limit` is `LIMIT/WINDOW` (`100/2m`).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct CsvLine {
    sha256: String,
    prefix: String,
    account_id: String,
    name: String,
    environment: String,
    scopes: String,
    preset: String,
    grant_all: String,
    expires_at: String,
    created_at: String,
    last_used_at: String,
    rate_limit: String,
}

fn present(cell: String) -> Option<String> {
    (!cell.trim().is_empty()).then_some(cell)
}

impl CsvLine {
    fn into_line(self) -> Result<ImportLine, String> {
        let grant_all = match self.grant_all.trim() {
            "" | "false" => false,
            "true" => true,
            other => return Err(format!("grant_all: {other:?} is not true or false")),
        };
        let rate_limit = match present(self.rate_limit) {
            None => None,
            Some(text) => {
                let (limit, window) = text
                    .split_once('/')
                    .ok_or("rate_limit: write LIMIT/WINDOW, e.g. 100/2m")?;
                Some(ImportRateLimit {
                    limit: limit
                        .trim()
                        .parse()
                        .map_err(|_| format!("rate_limit: {limit:?} is not a whole number"))?,
                    window: window.trim().to_owned(),
                })
            }
        };
        Ok(ImportLine {
            sha256: self.sha256,
            prefix: self.prefix,
            account_id: self.account_id,
            name: self.name,
            environment: self.environment,
            scopes: self.scopes.split_whitespace().map(str::to_owned).collect(),
            preset: present(self.preset),
            grant_all,
            expires_at: present(self.expires_at),
            created_at: present(self.created_at),
            last_used_at: present(self.last_used_at),
            rate_limit,
        })
    }
}

impl ImportLine {
    fn into_proto(self) -> Result<proto::ImportedKey, String> {
        let time = |field: &str, t: Option<String>| {
            t.map(|t| {
                t.parse::<Timestamp>()
                    .map_err(|e| format!("{field}: {e} (RFC 3339, e.g. 2025-01-31T12:00:00Z)"))
            })
            .transpose()
        };
        Ok(proto::ImportedKey {
            sha256: self.sha256,
            prefix: self.prefix,
            account_id: self.account_id,
            name: self.name,
            environment: match self.environment.as_str() {
                "live" => Environment::Live,
                "test" => Environment::Test,
                other => return Err(format!("environment: {other:?} is not live or test")),
            }
            .into(),
            scopes: self.scopes,
            preset: self.preset.unwrap_or_default(),
            grant_all: self.grant_all,
            expires_at: time("expires_at", self.expires_at)?,
            created_at: time("created_at", self.created_at)?,
            last_used_at: time("last_used_at", self.last_used_at)?,
            rate_limit: match self.rate_limit {
                None => None,
                Some(rl) => Some(proto::RateLimit {
                    limit: rl.limit,
                    window: Some(duration(&rl.window).map_err(|e| match e {
                        Failure::Failed(m) | Failure::Usage(m) => {
                            format!("rate_limit.window: {m}")
                        }
                    })?),
                }),
            },
        })
    }
}

/// A record read from the file: its line number and the key, or why it cannot be sent.
pub(super) type Record = (u64, Result<proto::ImportedKey, String>);

/// A reader that counts the bytes read through it (for the progress bar).
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The records of an import file, in order, read lazily.
pub(super) struct Records {
    inner: Inner,
}

enum Inner {
    Jsonl {
        lines: std::io::Lines<Box<dyn BufRead + Send>>,
        line: u64,
    },
    Csv {
        rows: csv::DeserializeRecordsIntoIter<Box<dyn BufRead + Send>, CsvLine>,
    },
}

impl Records {
    /// Opens `input` in `format`; `read` counts the bytes consumed. A CSV header naming an
    /// unknown column, or lacking a required one, is a usage error before anything is sent.
    pub(super) fn open(
        input: Box<dyn Read + Send>,
        format: Format,
        read: Arc<AtomicU64>,
    ) -> Result<Records, Failure> {
        let reader: Box<dyn BufRead + Send> = Box::new(std::io::BufReader::with_capacity(
            1 << 16,
            Counting { inner: input, read },
        ));
        let inner = match format {
            Format::Jsonl => Inner::Jsonl {
                lines: reader.lines(),
                line: 0,
            },
            Format::Csv => {
                let mut rows = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .trim(csv::Trim::Headers)
                    .from_reader(reader);
                let headers = rows
                    .headers()
                    .map_err(|e| Failure::Usage(format!("cannot read the CSV header: {e}")))?;
                if let Some(unknown) = headers.iter().find(|h| !CSV_COLUMNS.contains(h)) {
                    return Err(Failure::Usage(format!(
                        "CSV column {unknown:?} is not one of {}",
                        CSV_COLUMNS.join(", ")
                    )));
                }
                if let Some(missing) = CSV_COLUMNS[..5]
                    .iter()
                    .find(|c| !headers.iter().any(|h| h == **c))
                {
                    return Err(Failure::Usage(format!(
                        "the CSV header lacks the required column {missing:?}"
                    )));
                }
                Inner::Csv {
                    rows: rows.into_deserialize(),
                }
            }
        };
        Ok(Records { inner })
    }
}

impl Iterator for Records {
    /// `Err` only when the input itself cannot be read any more.
    type Item = Result<Record, Failure>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            Inner::Jsonl { lines, line } => loop {
                let text = match lines.next()? {
                    Ok(text) => text,
                    Err(e) => return Some(Err(Failure::Failed(format!("cannot read: {e}")))),
                };
                *line += 1;
                if text.trim().is_empty() {
                    continue;
                }
                let record = serde_json::from_str::<ImportLine>(&text)
                    .map_err(|e| e.to_string())
                    .and_then(ImportLine::into_proto);
                return Some(Ok((*line, record)));
            },
            Inner::Csv { rows } => {
                let row = rows.next()?;
                match row {
                    Ok(row) => {
                        let line = rows.reader().position().line().saturating_sub(1);
                        Some(Ok((line, row.into_line().and_then(ImportLine::into_proto))))
                    }
                    Err(e) => {
                        let line = e.position().map_or(0, csv::Position::line);
                        match e.kind() {
                            csv::ErrorKind::Io(_) => {
                                Some(Err(Failure::Failed(format!("cannot read: {e}"))))
                            }
                            _ => Some(Ok((line, Err(csv_error(&e))))),
                        }
                    }
                }
            }
        }
    }
}

/// A CSV row's error without the crate's position prefix (the line number is reported apart).
fn csv_error(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("has {len} cells, the header {expected_len}")
        }
        csv::ErrorKind::Utf8 { .. } => "is not UTF-8".to_owned(),
        csv::ErrorKind::Deserialize { err, .. } => err.to_string(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, format: Format) -> Vec<Record> {
        Records::open(
            Box::new(std::io::Cursor::new(text.to_owned().into_bytes())),
            format,
            Arc::default(),
        )
        .unwrap()
        .map(|r| r.unwrap_or_else(|_| panic!("readable")))
        .collect()
    }

    const HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn csv_rows_become_the_same_records_as_json_lines() {
        let csv = format!(
            "sha256,prefix,account_id,name,environment,scopes,grant_all,rate_limit,expires_at\n\
             {HEX},sk_live_ab,acme,\"CI, nightly\",live,videos:read videos:write,false,100/2m,2030-01-01T00:00:00Z\n\
             \n\
             {HEX},sk_live_ab,acme,bad,moon,,,,\n\
             {HEX},sk_live_ab,acme,short\n"
        );
        let json = format!(
            r#"{{"sha256":"{HEX}","prefix":"sk_live_ab","account_id":"acme","name":"CI, nightly","environment":"live","scopes":["videos:read","videos:write"],"rate_limit":{{"limit":100,"window":"2m"}},"expires_at":"2030-01-01T00:00:00Z"}}"#
        );
        let from_csv = read(&csv, Format::Csv);
        let from_json = read(&format!("\n{json}\n"), Format::Jsonl);
        assert_eq!(from_csv[0].0, 2, "line numbers count the header");
        assert_eq!(from_json[0].0, 2, "blank lines are counted, not read");
        assert_eq!(from_csv[0].1, from_json[0].1);
        assert!(from_csv[0].1.is_ok());
        assert_eq!(from_csv[1].0, 4);
        assert_eq!(
            from_csv[1].1.as_ref().unwrap_err(),
            "environment: \"moon\" is not live or test"
        );
        assert_eq!(from_csv[2].0, 5);
        assert!(from_csv[2].1.as_ref().unwrap_err().contains("cells"));
        assert_eq!(from_csv.len(), 3);
    }

    #[test]
    fn a_csv_header_must_name_known_columns() {
        for (header, expected) in [
            (
                "sha256,prefix,account_id,name,environment,secret\n",
                "\"secret\"",
            ),
            ("sha256,prefix,account_id,name\n", "\"environment\""),
        ] {
            let error = match Records::open(
                Box::new(std::io::Cursor::new(header.as_bytes().to_vec())),
                Format::Csv,
                Arc::default(),
            ) {
                Err(Failure::Usage(m)) => m,
                _ => panic!("refused"),
            };
            assert!(error.contains(expected), "{error}");
        }
    }
}
