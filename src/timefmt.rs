//! Timestamps as images carry them: RFC 3339 in UTC, to and from seconds since the epoch,
//! and docker's "2 hours ago" for the CREATED and STATUS columns. (Image configs and history
//! use RFC 3339; a handful of helpers do not justify a date crate.)

/// RFC 3339 UTC time for seconds since the epoch (`1970-01-01T00:00:00Z`).
pub fn rfc3339(secs: i64) -> String {
    let (date, time) = civil(secs);
    format!("{date}T{time}Z")
}

/// RFC 3339 UTC time with nanoseconds, as docker prints container times.
pub fn rfc3339_nanos(secs: i64, nanos: u32) -> String {
    let (date, time) = civil(secs);
    format!("{date}T{time}.{nanos:09}Z")
}

/// `YYYY-MM-DD` and `hh:mm:ss` for seconds since the epoch (Howard Hinnant's
/// civil-from-days).
fn civil(secs: i64) -> (String, String) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
    )
}

/// Seconds since the epoch for an RFC 3339 timestamp (`2024-01-02T03:04:05.123Z`, offsets).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ')
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    let mut rest = &s[19..];
    if let Some(r) = rest.strip_prefix('.') {
        rest = r.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "Z" | "z" | "" => 0,
        o if o.len() == 6 => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o[1..3].parse::<i64>().ok()? * 3600 + o[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (mo + if mo > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se - offset)
}

/// "2 hours ago", as docker prints CREATED (and a container's STATUS); "N/A" when the time is
/// missing or unreadable.
pub fn human_age(created: Option<&str>) -> String {
    let Some(ts) = created.and_then(parse_rfc3339) else {
        return "N/A".into();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    age_text((now - ts).max(0))
}

/// docker's wording for an age of `s` seconds (go-units `HumanDuration`).
fn age_text(s: i64) -> String {
    let (n, unit) = match s {
        0..=59 => {
            return if s <= 1 {
                "Less than a second ago".into()
            } else {
                format!("{s} seconds ago")
            };
        }
        60..=3599 => (s / 60, "minute"),
        3600..=172_799 => (s / 3600, "hour"),
        172_800..=1_209_599 => (s / 86_400, "day"),
        1_209_600..=5_183_999 => (s / 604_800, "week"),
        5_184_000..=63_071_999 => (s / 2_592_000, "month"),
        _ => (s / 31_536_000, "year"),
    };
    if n == 1 {
        match unit {
            "hour" => "About an hour ago".into(),
            "minute" => "About a minute ago".into(),
            _ => format!("1 {unit} ago"),
        }
    } else {
        format!("{n} {unit}s ago")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_nanos(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339_nanos(1_700_000_000, 5),
            "2023-11-14T22:13:20.000000005Z"
        );
    }

    #[test]
    fn parses_rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-01-02T03:04:05.123456789Z"),
            Some(1_704_164_645)
        );
        assert_eq!(
            parse_rfc3339("2024-01-02T04:04:05+01:00"),
            Some(1_704_164_645)
        );
        assert_eq!(parse_rfc3339("nonsense"), None);
    }

    #[test]
    fn ages_read_like_docker() {
        assert_eq!(human_age(None), "N/A");
        assert_eq!(human_age(Some("nonsense")), "N/A");
        assert_eq!(age_text(0), "Less than a second ago");
        assert_eq!(age_text(30), "30 seconds ago");
        assert_eq!(age_text(90), "About a minute ago");
        assert_eq!(age_text(3600), "About an hour ago");
        assert_eq!(age_text(7200), "2 hours ago");
        assert_eq!(age_text(3 * 86_400), "3 days ago");
        assert_eq!(age_text(2 * 31_536_000), "2 years ago");
    }
}
