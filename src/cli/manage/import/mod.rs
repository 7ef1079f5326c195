//! `keyward keys import FILE`: keys issued elsewhere, by their SHA-256, from JSON Lines or CSV
//! (a file or stdin). The file is read as it is sent — a thread reads and checks records into
//! batches while a few `ImportKeys` calls are in flight — so its size is bounded by the disk,
//! not memory. Answers are taken in file order; a file's progress is saved as they come
//! ([`checkpoint`]), so an interrupted import run again resumes after the last answered line.

mod checkpoint;
mod records;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::*;
use checkpoint::{Checkpoint, MAX_KEPT_REJECTIONS, Totals};
pub use records::Format;
use records::{Record, Records};

/// How often the progress is saved while batches are answered.
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// What `keyward keys import` was asked to do.
pub(super) struct ImportArgs<'a> {
    pub(super) file: &'a PathBuf,
    pub(super) format: Option<Format>,
    pub(super) batch: usize,
    pub(super) in_flight: usize,
    pub(super) restart: bool,
}

/// A batch the reader made: the records to send and the lines refused before sending.
struct Batch {
    /// The last line this batch covers.
    last_line: u64,
    keys: Vec<(u64, proto::ImportedKey)>,
    refused: Vec<(u64, String)>,
}

/// An `ImportKeys` call in flight, with its batch.
type InFlight = JoinHandle<(Batch, Result<proto::ImportKeysResponse, tonic::Status>)>;

pub(super) async fn import(args: ImportArgs<'_>, client: &ClientArgs) -> Result<(), Failure> {
    let batch_size = args.batch.clamp(1, keyward::limits::MAX_IMPORT);
    let in_flight = args.in_flight.clamp(1, 16);
    let stdin = args.file.as_os_str() == "-";
    let format = args.format.unwrap_or_else(|| Format::of(args.file));
    let cannot_read =
        |e: std::io::Error| Failure::Usage(format!("cannot read {}: {e}", args.file.display()));
    let (input, length, mut checkpoint): (Box<dyn std::io::Read + Send>, _, _) = if stdin {
        (Box::new(std::io::stdin()), None, None)
    } else {
        let file = std::fs::File::open(args.file).map_err(cannot_read)?;
        let meta = file.metadata().map_err(cannot_read)?;
        let checkpoint = Checkpoint::of(args.file, &meta);
        (Box::new(file), Some(meta.len()), Some(checkpoint))
    };
    let mut totals = Totals::default();
    if let Some(checkpoint) = &checkpoint {
        if args.restart {
            checkpoint.remove();
        } else {
            match checkpoint.load() {
                Ok(Some(saved)) => {
                    eprintln!(
                        "resuming after line {} (imported {}, already present {}, rejected {} \
                         so far; --restart starts over)",
                        saved.line, saved.imported, saved.already_present, saved.rejected
                    );
                    totals = saved;
                }
                Ok(None) => {}
                Err(why) => eprintln!("starting over: {why}"),
            }
        }
    }
    let read = Arc::new(AtomicU64::new(0));
    let records = Records::open(input, format, read.clone())?;
    let c = Client::connect(client).await?;
    let (batches, mut incoming) = mpsc::channel(in_flight);
    let reader = std::thread::spawn({
        let skip = totals.line;
        move || read_batches(records, skip, batch_size, &batches)
    });

    let bar = progress_bar(length);
    let started = Instant::now();
    let first_line = totals.line;
    let mut records_done = 0u64;
    let mut saved_at = Instant::now();
    let mut pending: VecDeque<InFlight> = VecDeque::new();
    let mut failure: Option<Failure> = None;
    let mut read_all = false;
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    while !(read_all && pending.is_empty()) {
        // Take the oldest answer once enough calls are in flight (or the file is read).
        let next = tokio::select! {
            biased;
            _ = &mut interrupt => {
                failure = Some(Failure::Failed("interrupted".into()));
                break;
            }
            batch = incoming.recv(), if !read_all && pending.len() < in_flight => batch,
            answered = async { pending.front_mut().expect("a call in flight").await },
                if !pending.is_empty() =>
            {
                pending.pop_front();
                match answered {
                    Ok((batch, Ok(answer))) => {
                        records_done += count(&mut totals, batch, &answer.results);
                    }
                    Ok((_, Err(status))) => {
                        failure = Some(Failure::from(status));
                        break;
                    }
                    Err(e) => {
                        failure = Some(Failure::Failed(format!("an import call failed: {e}")));
                        break;
                    }
                }
                bar.set_position(length.map_or(totals.line, |_| read.load(Ordering::Relaxed)));
                bar.set_message(rate(records_done, started));
                if let Some(checkpoint) = &mut checkpoint
                    && saved_at.elapsed() >= SAVE_EVERY
                {
                    checkpoint.save(&totals);
                    saved_at = Instant::now();
                }
                continue;
            }
        };
        match next {
            Some(Ok(batch)) if batch.keys.is_empty() => {
                // Nothing to send: only refused lines. Counted once the calls before it are.
                pending.push_back(tokio::spawn(async move {
                    (batch, Ok(proto::ImportKeysResponse::default()))
                }));
            }
            Some(Ok(batch)) => {
                let mut manage = c.manage.clone();
                let request = c.request(proto::ImportKeysRequest {
                    keys: batch.keys.iter().map(|(_, k)| k.clone()).collect(),
                });
                pending.push_back(tokio::spawn(async move {
                    let answer = manage.import_keys(request).await.map(|r| r.into_inner());
                    (batch, answer)
                }));
            }
            Some(Err(e)) => {
                failure = Some(e);
                break;
            }
            None => read_all = true,
        }
    }
    // Stop reading; calls already sent are answered and counted in order, up to the first
    // that failed, so the saved line is one before which everything was answered.
    drop(incoming);
    let mut counting = true;
    for call in pending {
        match call.await {
            Ok((batch, Ok(answer))) if counting => {
                records_done += count(&mut totals, batch, &answer.results);
            }
            _ => counting = false,
        }
    }
    bar.finish_and_clear();
    // The reader ends on its own once nobody listens (it is not waited for: it may be blocked
    // on stdin).
    drop(reader);
    let seconds = started.elapsed().as_secs_f64();

    if let Some(failure) = failure {
        let message = match failure {
            Failure::Failed(m) | Failure::Usage(m) => m,
        };
        let resume = match &mut checkpoint {
            Some(checkpoint) => {
                checkpoint.save(&totals);
                format!(
                    "; every line up to {} is answered: run the same command again to resume \
                     after it",
                    totals.line
                )
            }
            None => format!(
                "; every line up to {} is answered (importing again imports nothing twice)",
                totals.line
            ),
        };
        return Err(Failure::Failed(format!("{message}{resume}")));
    }
    if let Some(checkpoint) = &checkpoint {
        checkpoint.remove();
    }
    report(
        &totals,
        records_done,
        seconds,
        totals.line - first_line,
        c.output,
    )
}

/// Reads records into batches of at most `size` keys, after skipping lines up to `skip`;
/// stops at the end of the input or when nobody is listening any more.
fn read_batches(
    records: Records,
    skip: u64,
    size: usize,
    batches: &mpsc::Sender<Result<Batch, Failure>>,
) {
    let mut batch = Batch {
        last_line: skip,
        keys: Vec::with_capacity(size),
        refused: Vec::new(),
    };
    for record in records {
        let (line, record): Record = match record {
            Ok(record) => record,
            Err(e) => {
                let _ = batches.blocking_send(Err(e));
                return;
            }
        };
        if line <= skip {
            continue;
        }
        batch.last_line = line;
        match record {
            Ok(key) => batch.keys.push((line, key)),
            Err(why) => batch.refused.push((line, why)),
        }
        if batch.keys.len() == size || batch.refused.len() >= size {
            let full = std::mem::replace(
                &mut batch,
                Batch {
                    last_line: line,
                    keys: Vec::with_capacity(size),
                    refused: Vec::new(),
                },
            );
            if batches.blocking_send(Ok(full)).is_err() {
                return;
            }
        }
    }
    if !batch.keys.is_empty() || !batch.refused.is_empty() {
        let _ = batches.blocking_send(Ok(batch));
    }
}

/// Counts an answered batch into `totals`; answers the records it covered.
fn count(totals: &mut Totals, batch: Batch, results: &[proto::ImportKeyResult]) -> u64 {
    let records = (batch.keys.len() + batch.refused.len()) as u64;
    let mut lines: Vec<(u64, Option<String>)> = batch
        .refused
        .into_iter()
        .map(|(line, why)| (line, Some(why)))
        .collect();
    for ((line, _), result) in batch.keys.iter().zip(results) {
        match proto::ImportOutcome::try_from(result.outcome) {
            Ok(proto::ImportOutcome::Imported) => totals.imported += 1,
            Ok(proto::ImportOutcome::AlreadyPresent) => totals.already_present += 1,
            // The server names the record by its place in the call (`keys[3].sha256: …`).
            _ => lines.push((
                *line,
                Some(
                    result
                        .error
                        .split_once('.')
                        .map_or(result.error.as_str(), |(_, e)| e)
                        .to_owned(),
                ),
            )),
        }
    }
    lines.sort_by_key(|(line, _)| *line);
    for (line, why) in lines {
        totals.reject(line, why.unwrap_or_default());
    }
    totals.line = batch.last_line;
    records
}

fn progress_bar(length: Option<u64>) -> indicatif::ProgressBar {
    let (bar, template) = match length {
        Some(bytes) => (
            indicatif::ProgressBar::new(bytes),
            "{bar:40} {percent:>3}% {msg} ({eta} left)",
        ),
        None => (
            indicatif::ProgressBar::new_spinner(),
            "{spinner} line {pos} {msg}",
        ),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

fn rate(records: u64, started: Instant) -> String {
    let seconds = started.elapsed().as_secs_f64().max(0.001);
    format!("{records} records, {:.0}/s", records as f64 / seconds)
}

/// The end summary: totals, then the refused lines (stderr for a table).
fn report(
    totals: &Totals,
    records: u64,
    seconds: f64,
    lines: u64,
    output: Output,
) -> Result<(), Failure> {
    let per_second = records as f64 / seconds.max(0.001);
    let unshown = totals.rejected - totals.rejections.len() as u64;
    match output {
        Output::Json => println!(
            "{}",
            json!({
                "imported": totals.imported,
                "already_present": totals.already_present,
                "rejected_count": totals.rejected,
                "rejected": totals.rejections.iter()
                    .map(|(l, e)| json!({"line": l, "error": e}))
                    .collect::<Vec<_>>(),
                "lines": totals.line,
                "seconds": (seconds * 1000.0).round() / 1000.0,
                "records_per_second": per_second.round(),
            })
        ),
        Output::Table => {
            println!(
                "imported {}, already present {}, rejected {} ({records} records of {lines} \
                 lines in {seconds:.1} s, {per_second:.0} records/s)",
                totals.imported, totals.already_present, totals.rejected
            );
            for (line, why) in &totals.rejections {
                eprintln!("line {line}: {why}");
            }
            if unshown > 0 {
                eprintln!(
                    "… and {unshown} more rejected lines (the first {MAX_KEPT_REJECTIONS} are shown)"
                );
            }
        }
    }
    if totals.rejected == 0 {
        Ok(())
    } else {
        Err(Failure::Failed(format!(
            "{} record(s) rejected; the others were imported",
            totals.rejected
        )))
    }
}
