//! `keyward usage`: decisions over time of a key or an account's keys, by outcome, as a table
//! (with a bar or a sparkline per row on a terminal) or JSON.

use std::io::IsTerminal;

use super::*;
use keyward::proto::{GetUsageRequest, UsageGranularity, UsageSeries, VerifyCode};

/// `keyward usage`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("target").required(true).args(["key", "account", "no_key"]))]
pub struct UsageArgs {
    /// One key's decisions.
    #[arg(long)]
    pub key: Option<String>,
    /// The decisions of an account's keys (summed; one row per key with --by-key).
    #[arg(long)]
    pub account: Option<String>,
    /// Decisions about no stored key (missing, malformed, unknown): the whole service's
    /// (root keys only).
    #[arg(long)]
    pub no_key: bool,
    /// One row per key of the account.
    #[arg(long, requires = "account")]
    pub by_key: bool,
    /// Start of the range: how long ago (`7d`, `24h`) or an RFC 3339 time.
    #[arg(long, default_value = "24h")]
    pub since: String,
    /// Bucket width: minute, hour or day (chosen from the range when absent).
    #[arg(long, value_parser = ["minute", "hour", "day"])]
    pub by: Option<String>,
    /// Only these outcomes (`VALID,RATE_LIMITED`).
    #[arg(long, value_delimiter = ',')]
    pub outcome: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// When `since` was: `7d` ago, or an RFC 3339 time.
fn start(since: &str) -> Result<Timestamp, Failure> {
    if let Ok(ago) = keyward::duration::parse(since) {
        let secs = i64::try_from(ago.as_secs()).unwrap_or(i64::MAX);
        return Ok(Timestamp {
            seconds: now_secs().saturating_sub(secs),
            nanos: 0,
        });
    }
    let at = keyward::time::Timestamp::parse_rfc3339(since).ok_or_else(|| {
        Failure::Usage(format!(
            "--since {since:?} is neither a duration (7d) nor an RFC 3339 time"
        ))
    })?;
    let (seconds, nanos) = at.to_parts();
    Ok(Timestamp { seconds, nanos })
}

fn outcome_name(code: i32) -> &'static str {
    VerifyCode::try_from(code)
        .ok()
        .and_then(|c| keyward::verify::Code::from_number(c as i32))
        .map_or("UNKNOWN", keyward::verify::Code::as_str)
}

fn counts_json(counts: &[proto::OutcomeCount]) -> Value {
    Value::Object(
        counts
            .iter()
            .map(|c| (outcome_name(c.code).to_owned(), json!(c.count)))
            .collect(),
    )
}

fn valid(counts: &[proto::OutcomeCount]) -> u64 {
    counts
        .iter()
        .filter(|c| c.code == VerifyCode::Valid as i32)
        .map(|c| c.count)
        .sum()
}

/// A bar of `value` out of `max`, `width` cells at most.
fn bar(value: u64, max: u64, width: u64) -> String {
    let cells = (value * width).div_ceil(max.max(1));
    "█".repeat(usize::try_from(cells).unwrap_or(0))
}

/// A sparkline of a series' buckets over the whole range (empty buckets as the lowest mark).
fn sparkline(series: &UsageSeries, start: i64, end: i64, width: i64) -> String {
    const MARKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let cells = usize::try_from(width).unwrap_or(1).max(1);
    let mut sums = vec![0u64; cells];
    let span = (end - start).max(1);
    for b in &series.buckets {
        let at = b.start_time.as_ref().map_or(start, |t| t.seconds);
        let cell = usize::try_from((at - start) * width / span)
            .unwrap_or(0)
            .min(cells - 1);
        sums[cell] += b.total;
    }
    let max = sums.iter().copied().max().unwrap_or(0).max(1);
    sums.iter()
        .map(|&s| match s {
            0 => ' ',
            // Eight heights for 1..=max: the smallest non-zero count still shows.
            s => {
                MARKS[usize::try_from((s * 8).div_ceil(max) - 1)
                    .unwrap_or(7)
                    .min(7)]
            }
        })
        .collect()
}

/// `keyward usage …`.
pub async fn usage(args: UsageArgs) -> Result<(), Failure> {
    let mut c = Client::connect(&args.client).await?;
    let granularity = match args.by.as_deref() {
        Some("minute") => UsageGranularity::Minute,
        Some("hour") => UsageGranularity::Hour,
        Some("day") => UsageGranularity::Day,
        _ => UsageGranularity::Unspecified,
    };
    let outcomes = args
        .outcome
        .iter()
        .map(|name| {
            keyward::verify::Code::from_name(&name.to_ascii_uppercase())
                .map(keyward::verify::Code::number)
                .ok_or_else(|| Failure::Usage(format!("--outcome {name:?} is not an outcome code")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut request = GetUsageRequest {
        target: Some(match (&args.key, &args.account) {
            (Some(key), _) => proto::get_usage_request::Target::KeyId(key.clone()),
            (None, Some(account)) => proto::get_usage_request::Target::AccountId(account.clone()),
            // clap requires one of the three.
            (None, None) => proto::get_usage_request::Target::NoKey(true),
        }),
        group_by_key: args.by_key,
        start_time: Some(start(&args.since)?),
        end_time: None,
        granularity: granularity as i32,
        outcomes,
        page_size: 1_000,
        page_token: String::new(),
    };
    // Every page of keys.
    let mut series = Vec::new();
    let first = loop {
        let answer = c
            .manage
            .get_usage(c.request(request.clone()))
            .await?
            .into_inner();
        series.extend(answer.series.iter().cloned());
        if answer.next_page_token.is_empty() {
            break answer;
        }
        request.page_token = answer.next_page_token.clone();
    };
    let granularity = match UsageGranularity::try_from(first.granularity) {
        Ok(UsageGranularity::Minute) => "minute",
        Ok(UsageGranularity::Hour) => "hour",
        _ => "day",
    };
    let (start, end) = (
        first.start_time.as_ref().map_or(0, |t| t.seconds),
        first.end_time.as_ref().map_or(0, |t| t.seconds),
    );
    match c.output {
        Output::Json => {
            let series: Vec<Value> = series
                .iter()
                .map(|s| {
                    json!({
                        "key_id": (!s.key_id.is_empty()).then_some(&s.key_id),
                        "total": s.total,
                        "counts": counts_json(&s.counts),
                        "buckets": s.buckets.iter().map(|b| json!({
                            "start_time": b.start_time.as_ref().map(rfc3339),
                            "total": b.total,
                            "counts": counts_json(&b.counts),
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            println!(
                "{}",
                json!({
                    "granularity": granularity,
                    "start_time": first.start_time.as_ref().map(rfc3339),
                    "end_time": first.end_time.as_ref().map(rfc3339),
                    "series": series,
                })
            );
        }
        Output::Table => {
            let terminal = std::io::stdout().is_terminal();
            if args.by_key {
                let mut header = vec!["KEY", "TOTAL", "VALID", "REFUSED"];
                if terminal {
                    header.push("OVER TIME");
                }
                let mut t = table(&header);
                for s in &series {
                    let ok = valid(&s.counts);
                    let mut row = vec![
                        s.key_id.clone(),
                        s.total.to_string(),
                        ok.to_string(),
                        (s.total - ok).to_string(),
                    ];
                    if terminal {
                        row.push(sparkline(s, start, end, 24));
                    }
                    t.add_row(row);
                }
                println!("{t}");
                println!("{} key(s) with decisions, by {granularity}", series.len());
            } else {
                let s = series.first().cloned().unwrap_or_default();
                let mut header = vec!["FROM", "TOTAL", "VALID", "REFUSED (BY CODE)"];
                if terminal {
                    header.push("");
                }
                let max = s.buckets.iter().map(|b| b.total).max().unwrap_or(0);
                let mut t = table(&header);
                for b in &s.buckets {
                    let ok = valid(&b.counts);
                    let refused: Vec<String> = b
                        .counts
                        .iter()
                        .filter(|c| c.code != VerifyCode::Valid as i32)
                        .map(|c| format!("{} {}", outcome_name(c.code), c.count))
                        .collect();
                    let mut row = vec![
                        b.start_time.as_ref().map(rfc3339).unwrap_or_default(),
                        b.total.to_string(),
                        ok.to_string(),
                        refused.join(", "),
                    ];
                    if terminal {
                        row.push(bar(b.total, max, 30));
                    }
                    t.add_row(row);
                }
                println!("{t}");
                println!(
                    "{} decision(s), {} valid, by {granularity}",
                    s.total,
                    valid(&s.counts)
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_and_sparklines_scale_to_the_largest() {
        assert_eq!(bar(10, 10, 5), "█████");
        assert_eq!(bar(1, 10, 5), "█");
        assert_eq!(bar(0, 0, 5), "");
        let series = UsageSeries {
            buckets: vec![
                proto::UsageBucket {
                    start_time: Some(Timestamp {
                        seconds: 0,
                        nanos: 0,
                    }),
                    total: 8,
                    counts: Vec::new(),
                },
                proto::UsageBucket {
                    start_time: Some(Timestamp {
                        seconds: 30,
                        nanos: 0,
                    }),
                    total: 1,
                    counts: Vec::new(),
                },
            ],
            ..Default::default()
        };
        // 40 s over four cells of 10 s: 0 s in the first, 30 s in the last.
        assert_eq!(sparkline(&series, 0, 40, 4), "█  ▁");
    }
}
