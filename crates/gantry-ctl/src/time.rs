//! Ages as kubectl prints them (`45s`, `3m20s`, `5h`, `2d3h`).

/// A duration in seconds as kubectl's human-readable age: the API server's table cells use the same rules
/// ([`gantry_api::table::human_duration`]), so `describe` and `get` agree.
pub fn human_duration(seconds: i64) -> String {
    gantry_api::table::human_duration(jiff::SignedDuration::from_secs(seconds))
}

/// The age of an RFC 3339 timestamp, or `<unknown>` when there is none.
pub fn age(timestamp: Option<&str>) -> String {
    let Some(time) = timestamp.and_then(|t| t.parse::<jiff::Timestamp>().ok()) else {
        return "<unknown>".to_string();
    };
    human_duration(jiff::Timestamp::now().as_second() - time.as_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_kubectl_prints_them() {
        let cases = [
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (200, "3m20s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600 + 5 * 60, "3h5m"),
            (8 * 3600, "8h"),
            (47 * 3600, "47h"),
            (2 * 86400 + 3 * 3600, "2d3h"),
            (10 * 86400, "10d"),
            (3 * 365 * 86400 + 86400, "3y1d"),
            (9 * 365 * 86400, "9y"),
            (-5, "<invalid>"),
        ];
        for (seconds, text) in cases {
            assert_eq!(human_duration(seconds), text, "{seconds}");
        }
    }

    #[test]
    fn a_missing_timestamp_has_an_unknown_age() {
        assert_eq!(age(None), "<unknown>");
        assert_eq!(age(Some("not a time")), "<unknown>");
    }
}
