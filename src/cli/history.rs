//! `box history IMAGE`: the image config's history, newest first, each step with the size of
//! the layer it made, as `docker history` shows it.

use std::io::{self, Write};

use clap::Args;

use super::fmt::{Format, human_size, print_rows, print_table};
use super::store::open_store;
use super::{CmdResult, Global};
use crate::store::Image;
use crate::timefmt::human_age;

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Image name or ID
    pub image: String,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Print sizes and dates in human readable format (--human=false: bytes and RFC 3339)
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub human: bool,
    /// Format output: 'json', a Go template ('{{.CreatedBy}}'), or 'table TEMPLATE'
    #[arg(long)]
    pub format: Option<String>,
}

const HEADERS: &[(&str, &str)] = &[
    ("ID", "IMAGE"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedBy", "CREATED BY"),
    ("Size", "SIZE"),
    ("Comment", "COMMENT"),
];

/// One history step: (created, created_by, comment, layer size or None for an empty layer).
type Step = (Option<String>, String, String, Option<u64>);

/// The steps of `img`, oldest first, each matched with its layer in the manifest. An image
/// without history gets one step per layer, as docker shows it.
fn steps(img: &Image) -> Vec<Step> {
    let mut layers = img.manifest.layers.iter().map(|l| l.size);
    let mut out: Vec<Step> = img
        .config
        .history
        .iter()
        .map(|h| {
            let size = if h.empty_layer { None } else { layers.next() };
            (
                h.created.clone(),
                h.created_by.clone().unwrap_or_default(),
                h.comment.clone().unwrap_or_default(),
                size,
            )
        })
        .collect();
    // Layers the history does not describe (or no history at all).
    for size in layers {
        out.push((
            img.config.created.clone(),
            String::new(),
            String::new(),
            Some(size),
        ));
    }
    out
}

/// docker's ellipsis: at most `n` characters, the last one `…` when cut.
fn ellipsis(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

pub fn history(g: &Global, a: HistoryArgs) -> CmdResult {
    let format = Format::parse(a.format.as_deref())?;
    let store = open_store(g)?;
    let img = store.resolve_image(&a.image)?;
    let id = if a.no_trunc {
        img.id().to_string()
    } else {
        img.id().short().to_string()
    };
    let mut steps = steps(&img);
    steps.reverse();
    let rows: Vec<serde_json::Value> = steps
        .iter()
        .enumerate()
        .map(|(i, (created, by, comment, size))| {
            // Only the newest step is an image here; docker shows the others as <missing>.
            let row_id = if i == 0 {
                id.clone()
            } else {
                "<missing>".into()
            };
            let by = by.replace('\t', " ");
            let size = size.unwrap_or(0);
            serde_json::json!({
                "ID": row_id,
                "CreatedSince": if a.human { human_age(created.as_deref()) } else {
                    created.clone().unwrap_or_default()
                },
                "CreatedAt": created.clone().unwrap_or_default(),
                "CreatedBy": if a.no_trunc { by } else { ellipsis(&by, 45) },
                "Size": if a.human { human_size(size) } else { size.to_string() },
                "Comment": comment,
            })
        })
        .collect();
    let mut out = io::stdout().lock();
    if a.quiet {
        for r in &rows {
            writeln!(out, "{}", r["ID"].as_str().unwrap_or_default())?;
        }
        return Ok(0);
    }
    if print_rows(&mut out, &format, &rows, HEADERS)? {
        return Ok(0);
    }
    let keys = ["ID", "CreatedSince", "CreatedBy", "Size", "Comment"];
    let mut table = vec![
        ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
    ];
    for r in &rows {
        table.push(
            keys.iter()
                .map(|k| r[*k].as_str().unwrap_or_default().to_string())
                .collect(),
        );
    }
    print_table(&mut out, &table)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_by_is_cut_like_docker() {
        assert_eq!(ellipsis("short", 45), "short");
        let long = "x".repeat(50);
        let cut = ellipsis(&long, 45);
        assert_eq!(cut.chars().count(), 45);
        assert!(cut.ends_with('…'));
    }
}
