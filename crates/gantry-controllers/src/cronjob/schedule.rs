//! Cron schedules as CronJobs write them, read and stepped the way kube-controller-manager's cron library does.
//!
//! - Five fields: minute, hour, day of month, month (`1-12` or `JAN`-`DEC`), day of week (`0-6` or `SUN`-`SAT`),
//!   each a comma list of `*`, `?`, `N`, `N-M`, with an optional `/step` (`N/step` runs from N to the maximum).
//!   Names are case-insensitive. `H` (Jenkins' hash) is not cron syntax and is refused.
//! - When both day of month and day of week are restricted, a day matches if either matches (`0 0 13 * 5` is
//!   "every 13th and every Friday"); when one of them is `*` or `?`, both must match. A stepped star
//!   (`*/2`) counts as restricted.
//! - Descriptors `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`), `@hourly`, and
//!   `@every <duration>` (Go's duration syntax, whole seconds, at least one), which the API server admits.
//! - A `TZ=`/`CRON_TZ=` prefix is refused: the time zone is the CronJob's `spec.timeZone`.
//!
//! Times are stepped in the schedule's time zone field by field, the way the cron library steps them, so that
//! daylight-saving transitions behave as kube's do: a wall time skipped by a spring-forward transition does not
//! run that day; a wall time repeated by a fall-back transition runs twice.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, Zoned};

/// Marks a field written as `*` or `?` (no restriction), which matters for the day-of-month/day-of-week rule.
const STAR: u64 = 1 << 63;

/// How far ahead a next time is looked for: a schedule that matches nothing (`0 0 30 2 *`) gives up here.
const YEARS_AHEAD: i16 = 5;

/// Why a schedule is refused; the messages are the cron library's, which kube reports in events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Nothing to parse.
    #[error("empty spec string")]
    Empty,
    /// A `TZ=` or `CRON_TZ=` prefix.
    #[error("cannot use TZ or CRON_TZ in schedule, use timeZone field instead: {spec}")]
    TimeZonePrefix {
        /// The schedule.
        spec: String,
    },
    /// Not five fields.
    #[error("expected exactly 5 fields, found {found}: [{fields}]")]
    FieldCount {
        /// How many there are.
        found: usize,
        /// The fields, space-separated.
        fields: String,
    },
    /// An `@` word that is not a descriptor.
    #[error("unrecognized descriptor: {spec}")]
    UnknownDescriptor {
        /// The schedule.
        spec: String,
    },
    /// `@every` with a bad duration.
    #[error("failed to parse duration {spec}: {reason}")]
    Duration {
        /// The schedule.
        spec: String,
        /// Go's message for the duration.
        reason: String,
    },
    /// A field's number is not a number (or a name of that field).
    #[error("failed to parse int from {expr}: strconv.Atoi: parsing \"{expr}\": invalid syntax")]
    NotANumber {
        /// The part of the field.
        expr: String,
    },
    /// Too many `-` in a range.
    #[error("too many hyphens: {expr}")]
    Hyphens {
        /// The part of the field.
        expr: String,
    },
    /// Too many `/` in a range.
    #[error("too many slashes: {expr}")]
    Slashes {
        /// The part of the field.
        expr: String,
    },
    /// A range starting below the field's minimum.
    #[error("beginning of range ({start}) below minimum ({min}): {expr}")]
    BelowMinimum {
        /// Where the range starts.
        start: u32,
        /// The field's minimum.
        min: u32,
        /// The part of the field.
        expr: String,
    },
    /// A range ending above the field's maximum.
    #[error("end of range ({end}) above maximum ({max}): {expr}")]
    AboveMaximum {
        /// Where the range ends.
        end: u32,
        /// The field's maximum.
        max: u32,
        /// The part of the field.
        expr: String,
    },
    /// A range ending before it starts.
    #[error("beginning of range ({start}) beyond end of range ({end}): {expr}")]
    Backwards {
        /// Where the range starts.
        start: u32,
        /// Where it ends.
        end: u32,
        /// The part of the field.
        expr: String,
    },
    /// A step of zero.
    #[error("step of range should be a positive number: {expr}")]
    ZeroStep {
        /// The part of the field.
        expr: String,
    },
}

/// One field's bounds and names.
struct Bounds {
    min: u32,
    max: u32,
    names: &'static [(&'static str, u32)],
}

const MINUTES: Bounds = Bounds { min: 0, max: 59, names: &[] };
const HOURS: Bounds = Bounds { min: 0, max: 23, names: &[] };
const DAYS_OF_MONTH: Bounds = Bounds { min: 1, max: 31, names: &[] };
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        ("jan", 1),
        ("feb", 2),
        ("mar", 3),
        ("apr", 4),
        ("may", 5),
        ("jun", 6),
        ("jul", 7),
        ("aug", 8),
        ("sep", 9),
        ("oct", 10),
        ("nov", 11),
        ("dec", 12),
    ],
};
const DAYS_OF_WEEK: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &[("sun", 0), ("mon", 1), ("tue", 2), ("wed", 3), ("thu", 4), ("fri", 5), ("sat", 6)],
};

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Five cron fields, as bit sets (bit N set: value N matches; [`STAR`] marks an unrestricted field).
    Fields {
        /// Minutes 0-59.
        minute: u64,
        /// Hours 0-23.
        hour: u64,
        /// Days of the month 1-31.
        day_of_month: u64,
        /// Months 1-12.
        month: u64,
        /// Days of the week 0-6, Sunday first.
        day_of_week: u64,
    },
    /// `@every`: a constant interval (whole seconds, at least one), counted from the time given.
    Every(SignedDuration),
}

fn bits(start: u32, end: u32, step: u32) -> u64 {
    (start..=end).step_by(step as usize).fold(0, |acc, v| acc | (1 << v))
}

fn all(bounds: &Bounds) -> u64 {
    bits(bounds.min, bounds.max, 1) | STAR
}

fn parse_number(expr: &str) -> Result<u32, ScheduleError> {
    // Go's Atoi accepts a sign; a minus never reaches here (it splits ranges), a plus does.
    let digits = expr.strip_prefix('+').unwrap_or(expr);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ScheduleError::NotANumber { expr: expr.to_string() });
    }
    digits.parse().map_err(|_| ScheduleError::NotANumber { expr: expr.to_string() })
}

fn parse_number_or_name(expr: &str, bounds: &Bounds) -> Result<u32, ScheduleError> {
    let lower = expr.to_ascii_lowercase();
    match bounds.names.iter().find(|(name, _)| *name == lower) {
        Some((_, value)) => Ok(*value),
        None => parse_number(expr),
    }
}

fn parse_range(expr: &str, bounds: &Bounds) -> Result<u64, ScheduleError> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_and_high.len() == 1;
    let mut extra = 0;
    let (start, mut end) = if low_and_high[0] == "*" || low_and_high[0] == "?" {
        extra = STAR;
        (bounds.min, bounds.max)
    } else {
        let start = parse_number_or_name(low_and_high[0], bounds)?;
        match low_and_high.len() {
            1 => (start, start),
            2 => (start, parse_number_or_name(low_and_high[1], bounds)?),
            _ => return Err(ScheduleError::Hyphens { expr: expr.to_string() }),
        }
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = parse_number(range_and_step[1])?;
            if single {
                end = bounds.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
        _ => return Err(ScheduleError::Slashes { expr: expr.to_string() }),
    };
    if start < bounds.min {
        return Err(ScheduleError::BelowMinimum { start, min: bounds.min, expr: expr.to_string() });
    }
    if end > bounds.max {
        return Err(ScheduleError::AboveMaximum { end, max: bounds.max, expr: expr.to_string() });
    }
    if start > end {
        return Err(ScheduleError::Backwards { start, end, expr: expr.to_string() });
    }
    if step == 0 {
        return Err(ScheduleError::ZeroStep { expr: expr.to_string() });
    }
    Ok(bits(start, end, step) | extra)
}

fn parse_field(field: &str, bounds: &Bounds) -> Result<u64, ScheduleError> {
    field.split(',').filter(|part| !part.is_empty()).try_fold(0, |acc, part| Ok(acc | parse_range(part, bounds)?))
}

/// Go's `time.ParseDuration`, in nanoseconds.
fn parse_go_duration(text: &str) -> Result<i128, String> {
    let quoted = format!("{text:?}");
    let invalid = || format!("time: invalid duration {quoted}");
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let whole_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let whole = &rest[..whole_len];
        rest = &rest[whole_len..];
        let mut fraction = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            fraction = &after_dot[..len];
            rest = &after_dot[len..];
        }
        if whole.is_empty() && fraction.is_empty() {
            return Err(invalid());
        }
        let unit_len = rest.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("time: missing unit in duration {quoted}")),
            other => return Err(format!("time: unknown unit {other:?} in duration {quoted}")),
        };
        let whole: i128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| invalid())? };
        let mut value = whole.checked_mul(scale).ok_or_else(invalid)?;
        let mut divisor = 1i128;
        for digit in fraction.bytes().take(30) {
            divisor *= 10;
            value += i128::from(digit - b'0') * scale / divisor;
        }
        total = total.checked_add(value).ok_or_else(invalid)?;
        if total > i128::from(i64::MAX) {
            return Err(invalid());
        }
    }
    Ok(if negative { -total } else { total })
}

fn parse_descriptor(spec: &str) -> Result<Schedule, ScheduleError> {
    let fields = |minute: u64, hour: u64, day_of_month: u64, month: u64, day_of_week: u64| Schedule::Fields {
        minute,
        hour,
        day_of_month,
        month,
        day_of_week,
    };
    match spec {
        "@yearly" | "@annually" => Ok(fields(1, 1, 1 << 1, 1 << 1, all(&DAYS_OF_WEEK))),
        "@monthly" => Ok(fields(1, 1, 1 << 1, all(&MONTHS), all(&DAYS_OF_WEEK))),
        "@weekly" => Ok(fields(1, 1, all(&DAYS_OF_MONTH), all(&MONTHS), 1)),
        "@daily" | "@midnight" => Ok(fields(1, 1, all(&DAYS_OF_MONTH), all(&MONTHS), all(&DAYS_OF_WEEK))),
        "@hourly" => Ok(fields(1, all(&HOURS), all(&DAYS_OF_MONTH), all(&MONTHS), all(&DAYS_OF_WEEK))),
        _ => match spec.strip_prefix("@every ") {
            Some(duration) => {
                let nanos = parse_go_duration(duration)
                    .map_err(|reason| ScheduleError::Duration { spec: spec.to_string(), reason })?;
                // Whole seconds, at least one, as the cron library rounds them.
                let seconds = i64::try_from(nanos / 1_000_000_000).unwrap_or(i64::MAX).max(1);
                Ok(Schedule::Every(SignedDuration::from_secs(seconds)))
            }
            None => Err(ScheduleError::UnknownDescriptor { spec: spec.to_string() }),
        },
    }
}

/// `Date(year, month, day, …)` the way Go normalizes it: months and days past their ends roll over (January 32
/// is February 1), unlike calendar arithmetic that clamps. A wall time that a transition skips or repeats
/// resolves to the earlier instant, as Go resolves it (a skipped midnight lands in the previous day's last hour).
fn normalized(year: i16, month: i32, day: i32, hour: i8, tz: &TimeZone) -> Option<Timestamp> {
    let months = i32::from(year) * 12 + (month - 1);
    let (year, month) = (i16::try_from(months.div_euclid(12)).ok()?, i8::try_from(months.rem_euclid(12) + 1).ok()?);
    let date = Date::new(year, month, 1).ok()?.checked_add(jiff::Span::new().days(i64::from(day) - 1)).ok()?;
    let civil = DateTime::from_parts(date, jiff::civil::Time::new(hour, 0, 0, 0).ok()?);
    tz.to_ambiguous_timestamp(civil).earlier().ok()
}

fn bit(set: u64, value: impl Into<i64>) -> bool {
    let value = value.into();
    (0..64).contains(&value) && set & (1 << value) != 0
}

impl Schedule {
    /// Parses a CronJob's `spec.schedule`.
    pub fn parse(spec: &str) -> Result<Schedule, ScheduleError> {
        if spec.is_empty() {
            return Err(ScheduleError::Empty);
        }
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            return Err(ScheduleError::TimeZonePrefix { spec: spec.to_string() });
        }
        if spec.starts_with('@') {
            return parse_descriptor(spec);
        }
        let fields: Vec<&str> = spec.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(ScheduleError::FieldCount { found: fields.len(), fields: fields.join(" ") });
        }
        Ok(Schedule::Fields {
            minute: parse_field(fields[0], &MINUTES)?,
            hour: parse_field(fields[1], &HOURS)?,
            day_of_month: parse_field(fields[2], &DAYS_OF_MONTH)?,
            month: parse_field(fields[3], &MONTHS)?,
            day_of_week: parse_field(fields[4], &DAYS_OF_WEEK)?,
        })
    }

    /// The first time strictly after `after` (whole seconds) that the schedule matches in `tz`; `None` when
    /// nothing matches within five years (a date that never exists, such as February 30).
    pub fn next(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let (minute, hour, day_of_month, month, day_of_week) = match self {
            Schedule::Every(delay) => {
                let whole = Timestamp::from_second(after.as_second()).ok()?;
                return whole.checked_add(*delay).ok();
            }
            Schedule::Fields { minute, hour, day_of_month, month, day_of_week } => {
                (*minute, *hour, *day_of_month, *month, *day_of_week)
            }
        };
        let day_matches = |z: &Zoned| {
            let dom = bit(day_of_month, z.day());
            let dow = bit(day_of_week, z.weekday().to_sunday_zero_offset());
            if day_of_month & STAR != 0 || day_of_week & STAR != 0 { dom && dow } else { dom || dow }
        };
        let zoned = |t: Timestamp| t.to_zoned(tz.clone());
        // The upcoming whole second.
        let mut t = Timestamp::from_second(after.as_second().checked_add(1)?).ok()?;
        // Until a field has been moved, the earlier fields keep the starting time's values.
        let mut added = false;
        let year_limit = zoned(t).year().saturating_add(YEARS_AHEAD);
        'wrap: loop {
            let mut z = zoned(t);
            if z.year() > year_limit {
                return None;
            }
            while !bit(month, z.month()) {
                if !added {
                    added = true;
                    t = normalized(z.year(), i32::from(z.month()), 1, 0, tz)?;
                    z = zoned(t);
                }
                t = normalized(z.year(), i32::from(z.month()) + 1, i32::from(z.day()), z.hour(), tz)?;
                z = zoned(t);
                if z.month() == 1 {
                    continue 'wrap;
                }
            }
            while !day_matches(&z) {
                if !added {
                    added = true;
                    t = normalized(z.year(), i32::from(z.month()), i32::from(z.day()), 0, tz)?;
                    z = zoned(t);
                }
                t = normalized(z.year(), i32::from(z.month()), i32::from(z.day()) + 1, z.hour(), tz)?;
                z = zoned(t);
                // Midnight moved by a transition: back to the day's start, or on to the next day's.
                if z.hour() != 0 {
                    let shift = if z.hour() > 12 { 24 - i64::from(z.hour()) } else { -i64::from(z.hour()) };
                    t = t.checked_add(SignedDuration::from_hours(shift)).ok()?;
                    z = zoned(t);
                }
                if z.day() == 1 {
                    continue 'wrap;
                }
            }
            while !bit(hour, z.hour()) {
                if !added {
                    added = true;
                    t = t
                        .checked_sub(SignedDuration::from_secs(i64::from(z.minute()) * 60 + i64::from(z.second())))
                        .ok()?;
                }
                t = t.checked_add(SignedDuration::from_hours(1)).ok()?;
                z = zoned(t);
                if z.hour() == 0 {
                    continue 'wrap;
                }
            }
            while !bit(minute, z.minute()) {
                if !added {
                    added = true;
                    t = Timestamp::from_second(t.as_second() - t.as_second().rem_euclid(60)).ok()?;
                }
                t = t.checked_add(SignedDuration::from_mins(1)).ok()?;
                z = zoned(t);
                if z.minute() == 0 {
                    continue 'wrap;
                }
            }
            // The seconds field is always 0.
            if z.second() != 0 {
                added = true;
                t = Timestamp::from_second(t.as_second() - t.as_second().rem_euclid(60) + 60).ok()?;
                continue 'wrap;
            }
            return Some(t);
        }
    }

    /// The latest time at or before `at` that the schedule matches, if one is later than `after`.
    pub fn latest_between(&self, after: Timestamp, at: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let first = self.next(after, tz).filter(|t| *t <= at)?;
        if let Schedule::Every(delay) = self {
            // The series runs from `after`, not from any time: count whole intervals from its first time.
            let every = delay.as_secs().max(1);
            let steps = at.duration_since(first).as_secs() / every;
            return first.checked_add(SignedDuration::from_secs(steps.checked_mul(every)?)).ok();
        }
        // Look back from `at` over a doubling window until a time falls in it, then walk forward: never more
        // steps than the times in one window, whatever the distance from `after`.
        let mut window = SignedDuration::from_mins(1);
        let mut start = first;
        loop {
            let from = at.checked_sub(window).ok()?;
            if from <= first {
                break;
            }
            if let Some(t) = self.next(from, tz).filter(|t| *t <= at) {
                start = t;
                break;
            }
            window = window.checked_mul(2)?;
        }
        let mut latest = start;
        while let Some(t) = self.next(latest, tz).filter(|t| *t <= at) {
            latest = t;
        }
        Some(latest)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn utc() -> TimeZone {
        TimeZone::UTC
    }

    /// The next `n` times after `from` in `tz`, as RFC 3339 with offsets in that zone.
    fn times(spec: &str, from: &str, tz: &TimeZone, n: usize) -> Vec<String> {
        let schedule = Schedule::parse(spec).unwrap();
        let mut t = ts(from);
        let mut out = Vec::new();
        for _ in 0..n {
            t = schedule.next(t, tz).unwrap();
            out.push(t.to_zoned(tz.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z %a").to_string());
        }
        out
    }

    #[test]
    fn every_minute_runs_at_each_whole_minute_after_the_given_time() {
        assert_eq!(
            times("*/1 * * * *", "2026-03-01T10:00:00Z", &utc(), 3),
            ["2026-03-01T10:01:00+00:00 Sun", "2026-03-01T10:02:00+00:00 Sun", "2026-03-01T10:03:00+00:00 Sun"]
        );
        assert_eq!(times("* * * * *", "2026-03-01T10:00:30.5Z", &utc(), 1), ["2026-03-01T10:01:00+00:00 Sun"]);
    }

    #[test]
    fn steps_ranges_and_lists_combine() {
        assert_eq!(
            times("10-40/15 1,3 * * *", "2026-03-01T00:00:00Z", &utc(), 4),
            [
                "2026-03-01T01:10:00+00:00 Sun",
                "2026-03-01T01:25:00+00:00 Sun",
                "2026-03-01T01:40:00+00:00 Sun",
                "2026-03-01T03:10:00+00:00 Sun"
            ]
        );
        assert_eq!(
            times("50/5 * * * *", "2026-03-01T00:00:00Z", &utc(), 3),
            ["2026-03-01T00:50:00+00:00 Sun", "2026-03-01T00:55:00+00:00 Sun", "2026-03-01T01:50:00+00:00 Sun"],
            "N/step runs from N to the end of the field"
        );
    }

    #[test]
    fn month_and_weekday_names_are_case_insensitive() {
        assert_eq!(
            times("0 9 * Jan-FEB mon-wed", "2026-01-30T12:00:00Z", &utc(), 3),
            ["2026-02-02T09:00:00+00:00 Mon", "2026-02-03T09:00:00+00:00 Tue", "2026-02-04T09:00:00+00:00 Wed"]
        );
        assert_eq!(Schedule::parse("0 0 * dec SUN").unwrap(), Schedule::parse("0 0 * 12 0").unwrap());
    }

    #[test]
    fn both_day_fields_restricted_match_either_day() {
        // The 13th of each month, and every Friday.
        assert_eq!(
            times("0 0 13 * 5", "2026-02-01T00:00:00Z", &utc(), 4),
            [
                "2026-02-06T00:00:00+00:00 Fri",
                "2026-02-13T00:00:00+00:00 Fri",
                "2026-02-20T00:00:00+00:00 Fri",
                "2026-02-27T00:00:00+00:00 Fri"
            ]
        );
        assert_eq!(times("0 0 13 * 5", "2026-02-27T00:00:00Z", &utc(), 2)[1], "2026-03-13T00:00:00+00:00 Fri");
        assert_eq!(times("0 0 10 * 1", "2026-03-01T00:00:00Z", &utc(), 2)[1], "2026-03-09T00:00:00+00:00 Mon");
        assert_eq!(times("0 0 10 * 1", "2026-03-09T00:00:00Z", &utc(), 1)[0], "2026-03-10T00:00:00+00:00 Tue");
    }

    #[test]
    fn a_star_or_question_mark_in_one_day_field_requires_both_to_match() {
        assert_eq!(times("0 0 * * 1", "2026-03-01T00:00:00Z", &utc(), 1), ["2026-03-02T00:00:00+00:00 Mon"]);
        assert_eq!(times("0 0 ? * 1", "2026-03-01T00:00:00Z", &utc(), 1), ["2026-03-02T00:00:00+00:00 Mon"]);
        assert_eq!(times("0 0 15 * ?", "2026-03-01T00:00:00Z", &utc(), 1), ["2026-03-15T00:00:00+00:00 Sun"]);
        // A stepped star restricts: odd days of the month, or Mondays.
        assert_eq!(
            times("0 0 */2 * 1", "2026-03-01T00:00:00Z", &utc(), 3),
            ["2026-03-02T00:00:00+00:00 Mon", "2026-03-03T00:00:00+00:00 Tue", "2026-03-05T00:00:00+00:00 Thu"]
        );
    }

    #[test]
    fn descriptors_are_their_cron_equivalents() {
        let cases = [
            ("@yearly", "0 0 1 1 *"),
            ("@annually", "0 0 1 1 *"),
            ("@monthly", "0 0 1 * *"),
            ("@weekly", "0 0 * * 0"),
            ("@daily", "0 0 * * *"),
            ("@midnight", "0 0 * * *"),
            ("@hourly", "0 * * * *"),
        ];
        for (descriptor, fields) in cases {
            assert_eq!(Schedule::parse(descriptor).unwrap(), Schedule::parse(fields).unwrap(), "{descriptor}");
        }
        assert_eq!(times("@weekly", "2026-03-04T00:00:00Z", &utc(), 1), ["2026-03-08T00:00:00+00:00 Sun"]);
    }

    #[test]
    fn every_counts_whole_seconds_from_the_given_time() {
        let schedule = Schedule::parse("@every 1h30m").unwrap();
        assert_eq!(schedule, Schedule::Every(SignedDuration::from_mins(90)));
        assert_eq!(schedule.next(ts("2026-03-01T10:00:10.7Z"), &utc()), Some(ts("2026-03-01T11:30:10Z")));
        assert_eq!(Schedule::parse("@every 1.5s").unwrap(), Schedule::Every(SignedDuration::from_secs(1)));
        assert_eq!(Schedule::parse("@every 10ms").unwrap(), Schedule::Every(SignedDuration::from_secs(1)));
        assert_eq!(
            Schedule::parse("@every 5x").unwrap_err().to_string(),
            "failed to parse duration @every 5x: time: unknown unit \"x\" in duration \"5x\""
        );
        assert_eq!(
            Schedule::parse("@every 5").unwrap_err().to_string(),
            "failed to parse duration @every 5: time: missing unit in duration \"5\""
        );
    }

    #[test]
    fn invalid_schedules_are_refused_with_the_cron_librarys_messages() {
        let cases = [
            ("", "empty spec string"),
            ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
            ("0 0 * * * *", "expected exactly 5 fields, found 6: [0 0 * * * *]"),
            ("60 * * * *", "end of range (60) above maximum (59): 60"),
            ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
            ("* * * 13 *", "end of range (13) above maximum (12): 13"),
            ("* * * * 7", "end of range (7) above maximum (6): 7"),
            ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
            ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
            ("*/2/3 * * * *", "too many slashes: */2/3"),
            ("*/0 * * * *", "step of range should be a positive number: */0"),
            ("H * * * *", "failed to parse int from H: strconv.Atoi: parsing \"H\": invalid syntax"),
            ("* * * * mon-fry", "failed to parse int from fry: strconv.Atoi: parsing \"fry\": invalid syntax"),
            ("@fortnightly", "unrecognized descriptor: @fortnightly"),
            (
                "TZ=Europe/Paris 0 9 * * *",
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead: TZ=Europe/Paris 0 9 * * *",
            ),
            (
                "CRON_TZ=UTC @daily",
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead: CRON_TZ=UTC @daily",
            ),
        ];
        for (spec, message) in cases {
            assert_eq!(Schedule::parse(spec).unwrap_err().to_string(), message, "{spec:?}");
        }
    }

    #[test]
    fn a_date_that_never_exists_has_no_next_time() {
        let schedule = Schedule::parse("0 0 30 2 *").unwrap();
        assert_eq!(schedule.next(ts("2026-01-01T00:00:00Z"), &utc()), None);
        // February 29th comes within five years.
        let leap = Schedule::parse("0 0 29 2 *").unwrap();
        assert_eq!(leap.next(ts("2026-01-01T00:00:00Z"), &utc()), Some(ts("2028-02-29T00:00:00Z")));
    }

    #[test]
    fn times_follow_the_schedules_time_zone() {
        let tz = TimeZone::get("Asia/Kolkata").unwrap();
        assert_eq!(times("30 9 * * *", "2026-03-01T00:00:00Z", &tz, 1), ["2026-03-01T09:30:00+05:30 Sun"]);
        let kolkata = Schedule::parse("30 9 * * *").unwrap();
        assert_eq!(kolkata.next(ts("2026-03-01T00:00:00Z"), &tz), Some(ts("2026-03-01T04:00:00Z")));
    }

    #[test]
    fn a_wall_time_skipped_by_spring_forward_does_not_run_that_day() {
        // New York skips 02:00-03:00 on 2026-03-08.
        let tz = TimeZone::get("America/New_York").unwrap();
        assert_eq!(
            times("30 2 * * *", "2026-03-07T12:00:00Z", &tz, 2),
            ["2026-03-09T02:30:00-04:00 Mon", "2026-03-10T02:30:00-04:00 Tue"]
        );
        // Hourly keeps running, one hour fewer that day.
        assert_eq!(
            times("0 * * * *", "2026-03-08T05:30:00Z", &tz, 2),
            ["2026-03-08T01:00:00-05:00 Sun", "2026-03-08T03:00:00-04:00 Sun"]
        );
    }

    #[test]
    fn a_wall_time_repeated_by_fall_back_runs_twice() {
        // New York repeats 01:00-02:00 on 2026-11-01.
        let tz = TimeZone::get("America/New_York").unwrap();
        assert_eq!(
            times("30 1 * * *", "2026-10-31T12:00:00Z", &tz, 3),
            ["2026-11-01T01:30:00-04:00 Sun", "2026-11-01T01:30:00-05:00 Sun", "2026-11-02T01:30:00-05:00 Mon"]
        );
    }

    #[test]
    fn a_midnight_skipped_by_a_transition_starts_the_day_an_hour_later() {
        // Santiago skips 00:00-01:00 on 2026-09-06.
        let tz = TimeZone::get("America/Santiago").unwrap();
        let next = times("0 * 6 9 *", "2026-09-05T12:00:00Z", &tz, 2);
        assert_eq!(next, ["2026-09-06T01:00:00-03:00 Sun", "2026-09-06T02:00:00-03:00 Sun"]);
    }

    #[test]
    fn the_latest_time_of_an_interval_counts_from_the_start_of_the_series() {
        let schedule = Schedule::parse("@every 90s").unwrap();
        let at = ts("2026-03-01T10:05:10Z");
        assert_eq!(schedule.latest_between(ts("2026-03-01T10:00:30Z"), at, &utc()), Some(ts("2026-03-01T10:05:00Z")));
        assert_eq!(schedule.latest_between(ts("2026-03-01T10:04:00Z"), at, &utc()), None);
    }

    #[test]
    fn the_latest_time_is_exact_whatever_the_distance() {
        let schedule = Schedule::parse("30 6-16/4 * * 1-5").unwrap();
        let latest = schedule.latest_between(ts("2026-01-01T00:00:00Z"), ts("2026-03-04T12:00:00Z"), &utc());
        assert_eq!(latest, Some(ts("2026-03-04T10:30:00Z")));
        let minutely = Schedule::parse("* * * * *").unwrap();
        let latest = minutely.latest_between(ts("2020-01-01T00:00:00Z"), ts("2026-03-04T12:00:59Z"), &utc());
        assert_eq!(latest, Some(ts("2026-03-04T12:00:00Z")), "six years of minutes are not walked one by one");
        assert_eq!(minutely.latest_between(ts("2026-03-04T12:00:00Z"), ts("2026-03-04T12:00:59Z"), &utc()), None);
        let at_the_time = minutely.latest_between(ts("2026-03-04T11:59:00Z"), ts("2026-03-04T12:00:00Z"), &utc());
        assert_eq!(at_the_time, Some(ts("2026-03-04T12:00:00Z")), "a time equal to `at` counts");
    }
}
