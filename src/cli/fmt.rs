//! Output formats several commands share: docker's sizes, its tabwriter columns, and
//! `--format` (`json`, `table ...`, or a Go template; see template.rs).

use std::io::{self, Write};

use anyhow::Context;
use serde_json::Value;

use super::template::Template;

/// What `--format` asked for.
pub enum Format {
    /// No flag (or `table` alone): the command's own table.
    Default,
    /// `--format json`: one JSON object per line (inspect: the JSON array).
    Json,
    /// A Go template, run once per object; `table` adds a header row and aligns columns.
    Template { t: Template, table: bool },
}

impl Format {
    /// Parse `--format`: docker's `\t` and `\n` escapes become tab and newline first.
    pub fn parse(flag: Option<&str>) -> anyhow::Result<Format> {
        let Some(raw) = flag else {
            return Ok(Format::Default);
        };
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed == "table" {
            return Ok(Format::Default);
        }
        if trimmed == "json" {
            return Ok(Format::Json);
        }
        // docker takes any format that starts with "table" as a table.
        let (table, body) = match trimmed.strip_prefix("table") {
            Some(rest) => (true, rest.trim()),
            None => (false, trimmed),
        };
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        let t = Template::parse("--format", &body).context("template parsing error")?;
        Ok(Format::Template { t, table })
    }
}

/// Print `rows` as `--format` asks: JSON lines, or the template per row. `headers` maps
/// field names to docker's column titles for `table` (a field not listed gets its name in
/// capitals). Returns false for `Format::Default`, which the caller prints itself.
pub fn print_rows(
    out: &mut dyn Write,
    f: &Format,
    rows: &[Value],
    headers: &[(&str, &str)],
) -> anyhow::Result<bool> {
    match f {
        Format::Default => Ok(false),
        Format::Json => {
            for r in rows {
                writeln!(out, "{}", serde_json::to_string(r)?)?;
            }
            Ok(true)
        }
        Format::Template { t, table } => {
            let mut lines = vec![];
            if *table {
                let mut h = serde_json::Map::new();
                for (k, v) in headers {
                    h.insert(k.to_string(), Value::String(v.to_string()));
                }
                if let Some(Value::Object(o)) = rows.first() {
                    for k in o.keys() {
                        h.entry(k.clone())
                            .or_insert_with(|| Value::String(k.to_uppercase()));
                    }
                }
                lines.push(
                    t.render(&Value::Object(h))
                        .context("template execution error")?,
                );
            }
            for r in rows {
                lines.push(t.render(r).context("template execution error")?);
            }
            if *table {
                let cells: Vec<Vec<String>> = lines
                    .iter()
                    .flat_map(|l| {
                        l.split('\n')
                            .map(|x| x.split('\t').map(String::from).collect())
                    })
                    .collect();
                print_table(out, &cells)?;
            } else {
                for l in lines {
                    writeln!(out, "{l}")?;
                }
            }
            Ok(true)
        }
    }
}

/// Docker's size format: SI units, 3 significant digits ("4.26MB").
pub fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let s = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", units[i])
}

/// docker's Go time format for `CreatedAt`: `2024-01-02 03:04:05 +0000 UTC`.
pub fn docker_time(rfc3339: &str) -> String {
    match crate::timefmt::parse_rfc3339(rfc3339) {
        Some(secs) => crate::timefmt::rfc3339(secs)
            .replace('T', " ")
            .replace('Z', " +0000 UTC"),
        None => rfc3339.to_string(),
    }
}

/// Left-aligned columns separated by at least three spaces, as docker's tabwriter does.
pub fn print_table<R: AsRef<[String]>>(out: &mut dyn Write, rows: &[R]) -> io::Result<()> {
    let cols = rows.iter().map(|r| r.as_ref().len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.as_ref().get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let r = r.as_ref();
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(flag: &str, rows: &[Value], headers: &[(&str, &str)]) -> String {
        let f = Format::parse(Some(flag)).unwrap();
        let mut out = vec![];
        assert!(print_rows(&mut out, &f, rows, headers).unwrap());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn table_prefix_escapes_and_headers() {
        let rows = [
            serde_json::json!({"ID": "abc", "Names": "web", "Extra": "x"}),
            serde_json::json!({"ID": "defghi", "Names": "db", "Extra": "y"}),
        ];
        let h = [("ID", "CONTAINER ID"), ("Names", "NAMES")];
        assert_eq!(
            render(r"table {{.ID}}\t{{.Names}}\t{{.Extra}}", &rows, &h),
            "CONTAINER ID   NAMES   EXTRA\nabc            web     x\ndefghi         db      y\n"
        );
        assert_eq!(render(r"table{{.Names}}", &rows, &h), "NAMES\nweb\ndb\n");
        assert_eq!(render(r"{{.ID}}\n{{.Names}}", &rows[..1], &h), "abc\nweb\n");
        assert_eq!(
            render("json", &rows[..1], &h),
            "{\"Extra\":\"x\",\"ID\":\"abc\",\"Names\":\"web\"}\n"
        );
        assert!(matches!(
            Format::parse(Some(" table ")).unwrap(),
            Format::Default
        ));
        assert!(matches!(Format::parse(None).unwrap(), Format::Default));
    }

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(4_261_000), "4.26MB");
        assert_eq!(human_size(72_800_000), "72.8MB");
        assert_eq!(human_size(1_000), "1kB");
        assert_eq!(human_size(123_456_789), "123MB");
    }
}
