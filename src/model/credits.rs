//! Usage credits: a total budget of units a key may spend (not a rate), optionally refilled
//! daily or monthly. The database holds the balance; replicas reserve blocks of it and spend
//! them locally ([`crate::ratelimit::credits`]). Refills set the balance to the refill amount at
//! midnight UTC (daily) or on a day of the month (monthly; the last day of shorter months).

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// A key's credits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Credits {
    /// Units left in the database (replicas may hold a block each besides).
    pub remaining: u64,
    /// The refill, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refill: Option<Refill>,
    /// When the balance was last set or refilled (µs): the period a reserved block belongs to.
    pub refilled_at: Timestamp,
}

/// How often and how much a key's credits are refilled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refill {
    /// The balance after a refill.
    pub amount: u64,
    /// How often.
    pub interval: RefillInterval,
    /// For monthly refills, the day of the month (1–31; the month's last day when it is
    /// shorter); `None`: the 1st.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day_of_month: Option<u8>,
}

/// How often credits are refilled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefillInterval {
    /// At every midnight UTC.
    Daily,
    /// On a day of every month, at midnight UTC.
    Monthly,
}

const DAY_US: i64 = 86_400 * 1_000_000;

impl Refill {
    /// Why these refill terms cannot be used, if they cannot.
    pub fn problem(&self) -> Option<&'static str> {
        match (self.interval, self.day_of_month) {
            (_, Some(0)) | (_, Some(32..)) => Some("day_of_month must be 1 to 31"),
            (RefillInterval::Daily, Some(_)) => {
                Some("day_of_month applies to monthly refills only")
            }
            _ => None,
        }
    }

    /// The first refill strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Timestamp {
        let day = after.micros().div_euclid(DAY_US);
        match self.interval {
            RefillInterval::Daily => Timestamp::from_micros((day + 1) * DAY_US),
            RefillInterval::Monthly => {
                let wanted = u32::from(self.day_of_month.unwrap_or(1));
                let (mut year, mut month, _) = civil_from_days(day);
                loop {
                    let refill_day = wanted.min(days_in_month(year, month));
                    let at = days_from_civil(year, month, refill_day) * DAY_US;
                    if at > after.micros() {
                        return Timestamp::from_micros(at);
                    }
                    (year, month) = if month == 12 {
                        (year + 1, 1)
                    } else {
                        (year, month + 1)
                    };
                }
            }
        }
    }
}

impl Credits {
    /// The balance at `now`: refilled if a refill fell due since the last.
    pub fn at(self, now: Timestamp) -> Credits {
        match self.refill {
            Some(refill) if refill.next_after(self.refilled_at) <= now => Credits {
                remaining: refill.amount,
                refilled_at: now,
                ..self
            },
            _ => self,
        }
    }

    /// Takes up to `want` units, and at least `need`, from the balance; how many were taken
    /// (0 when fewer than `need` are left).
    pub fn reserve(&mut self, need: u64, want: u64) -> u64 {
        if self.remaining < need {
            return 0;
        }
        let granted = want.max(need).min(self.remaining);
        self.remaining -= granted;
        granted
    }

    /// When the next refill falls, if the credits have one.
    pub fn next_refill(&self) -> Option<Timestamp> {
        self.refill.map(|r| r.next_after(self.refilled_at))
    }
}

/// Days since 1970-01-01 → (year, month, day); Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) → days since 1970-01-01; Howard Hinnant's `days_from_civil`.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Midnight UTC of a date, in µs.
    fn date(year: i64, month: u32, day: u32) -> Timestamp {
        Timestamp::from_micros(days_from_civil(year, month, day) * DAY_US)
    }

    #[test]
    fn calendar_round_trips() {
        for days in [-1, 0, 59, 60, 365, 10_957, 11_016, 20_000, 30_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn daily_refills_fall_at_midnight_utc() {
        let daily = Refill {
            amount: 10,
            interval: RefillInterval::Daily,
            day_of_month: None,
        };
        let noon = Timestamp::from_micros(date(2026, 12, 3).micros() + DAY_US / 2);
        assert_eq!(daily.next_after(noon), date(2026, 12, 4));
        assert_eq!(daily.next_after(date(2026, 12, 31)), date(2027, 1, 1));
    }

    #[test]
    fn monthly_refills_fall_on_their_day_or_the_months_last() {
        let monthly = |day| Refill {
            amount: 10,
            interval: RefillInterval::Monthly,
            day_of_month: day,
        };
        assert_eq!(
            monthly(None).next_after(date(2026, 12, 3)),
            date(2027, 1, 1)
        );
        assert_eq!(
            monthly(Some(15)).next_after(date(2026, 12, 3)),
            date(2026, 12, 15)
        );
        assert_eq!(
            monthly(Some(15)).next_after(date(2026, 12, 15)),
            date(2027, 1, 15)
        );
        // The 31st in February is its last day, in a leap year too.
        assert_eq!(
            monthly(Some(31)).next_after(date(2027, 2, 1)),
            date(2027, 2, 28)
        );
        assert_eq!(
            monthly(Some(31)).next_after(date(2028, 2, 1)),
            date(2028, 2, 29)
        );
        assert_eq!(
            monthly(Some(0)).problem(),
            Some("day_of_month must be 1 to 31")
        );
    }

    #[test]
    fn a_due_refill_sets_the_balance_and_reservations_never_overdraw() {
        let mut credits = Credits {
            remaining: 3,
            refill: Some(Refill {
                amount: 100,
                interval: RefillInterval::Daily,
                day_of_month: None,
            }),
            refilled_at: date(2026, 12, 2),
        };
        assert_eq!(credits.reserve(5, 10), 0, "fewer left than needed");
        assert_eq!(credits.reserve(1, 10), 3, "what is left");
        assert_eq!(credits.remaining, 0);
        let now = Timestamp::from_micros(date(2026, 12, 3).micros() + 5);
        let mut refilled = credits.at(now);
        assert_eq!(refilled.remaining, 100);
        assert_eq!(refilled.next_refill(), Some(date(2026, 12, 4)));
        assert_eq!(refilled.reserve(1, 40), 40);
        assert_eq!(refilled.at(now).remaining, 60, "not refilled twice a day");
    }
}
