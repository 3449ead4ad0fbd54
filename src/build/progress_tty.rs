//! The TTY view of a build, as BuildKit draws it: a live area at the bottom of the terminal
//! (a header with the elapsed time, each running step with its time, its transfers as bars
//! and its last output lines), redrawn in place; a step that ends collapses to one permanent
//! line above it (`CACHED` when it came from the cache, `ERROR` with its last lines when it
//! failed; the CLI prints the error itself). The last frame is the summary.
//!
//! Nothing a step prints reaches the terminal raw: [`sanitize`] drops escape sequences and
//! control characters, and every line is cut to the terminal's width (counted in columns,
//! wide characters as two), so neither a hostile RUN nor a narrow pane can move the cursor
//! the redraw relies on. Long messages are wrapped here, never by the terminal. The cursor is
//! left visible: a build killed by Ctrl-C must not leave the terminal without one.

use std::fmt::Write as _;
use std::time::Duration;

use unicode_width::UnicodeWidthChar;

use super::progress::{State, Step, Xfer};
use indicatif::HumanBytes;

/// Output lines shown under a running step.
pub const LIVE_LOG_LINES: usize = 6;

/// A line of the view: free text (wrapped) or a step line (cut, its time at the right edge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Text(String),
    Step { left: String, right: String },
}

/// The permanent lines of a step that ended.
pub fn collapsed(s: &Step) -> Vec<Line> {
    let took = s.took.unwrap_or_default();
    let mut v = vec![];
    let tag = match (&s.error, s.cached) {
        (Some(_), _) => "ERROR ",
        (None, true) => "CACHED ",
        (None, false) => "",
    };
    v.push(Line::Step {
        left: format!("=> {tag}{}", s.name),
        right: secs(took),
    });
    if s.error.is_some() {
        for l in &s.tail {
            v.push(Line::Step {
                left: format!(" > {l}"),
                right: String::new(),
            });
        }
    }
    v
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// The live area for the current state.
fn live(st: &State, elapsed: Duration, total: usize, cols: usize) -> Vec<Line> {
    let done = st.steps.iter().filter(|s| s.took.is_some()).count();
    let mut v = vec![];
    let header = match st.finished {
        Some(true) => format!("[+] Building {} ({done}/{total}) FINISHED", secs(elapsed)),
        Some(false) => format!("[+] Building {} ({done}/{total}) ERROR", secs(elapsed)),
        None => format!("[+] Building {} ({done}/{total})", secs(elapsed)),
    };
    v.push(Line::Step {
        left: header,
        right: String::new(),
    });
    if st.finished.is_some() {
        return v;
    }
    for (i, s) in st
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.took.is_none())
    {
        v.push(Line::Step {
            left: format!("=> {}", s.name),
            right: secs(s.t0.elapsed()),
        });
        for x in st.xfers.iter().filter(|x| x.step == Some(i)) {
            v.push(Line::Step {
                left: format!("=> => {}", bar(x, cols)),
                right: match x.completed {
                    None => secs(x.t0.elapsed()),
                    Some(_) => String::new(),
                },
            });
        }
        let skip = s.tail.len().saturating_sub(LIVE_LOG_LINES);
        for l in s.tail.iter().skip(skip) {
            v.push(Line::Step {
                left: format!("=> => # {l}"),
                right: String::new(),
            });
        }
    }
    v
}

/// `abcd…: Downloading  [=====>    ] 12.30 MiB/28.61 MiB 2.10 MiB/s`, the fields and units
/// of `box pull`'s indicatif bars; the bar narrows with the terminal and goes below 75
/// columns. A blob whose bytes are all there shows only its state ("Extracting").
fn bar(x: &Xfer, cols: usize) -> String {
    let mut s = format!("{}: {:12}", x.digest.short(), x.action);
    if x.completed.is_some() || x.total == 0 || x.current >= x.total {
        return s.trim_end().to_string();
    }
    let width = cols.saturating_sub(70).min(30);
    if width >= 5 {
        let filled = ((x.current as f64 / x.total as f64) * width as f64) as usize;
        let mut b = "=".repeat(filled);
        if filled < width {
            b.push('>');
            b.push_str(&" ".repeat(width - filled - 1));
        }
        let _ = write!(s, " [{b}]");
    }
    let rate = x.current as f64 / x.t0.elapsed().as_secs_f64().max(0.001);
    let _ = write!(
        s,
        " {}/{} {}/s",
        HumanBytes(x.current),
        HumanBytes(x.total),
        HumanBytes(rate as u64)
    );
    s
}

/// The lines of `l` at most `w` columns wide.
pub fn render(l: &Line, w: usize) -> Vec<String> {
    match l {
        Line::Text(t) => wrap(t, w),
        Line::Step { left, right } => {
            let rw = width(right);
            if right.is_empty() || w < rw + 2 {
                return vec![fit(left, w)];
            }
            let left = fit(left, w - rw - 1);
            let pad = w - rw - width(&left);
            vec![format!("{left}{}{right}", " ".repeat(pad))]
        }
    }
}

/// The text to write for the next frame: move to the live area's first line, clear to the
/// end of the screen, write the pending permanent lines, then the live area. Every line is
/// at most `cols - 1` columns, so the terminal never wraps one and the cursor arithmetic
/// holds; the live area is at most `rows - 1` lines, so none of it scrolls away.
pub fn redraw(st: &mut State, elapsed: Duration, total: usize, cols: usize, rows: usize) -> String {
    let w = cols.max(2) - 1;
    let mut out = String::new();
    if st.drawn > 0 {
        let _ = write!(out, "\x1b[{}A", st.drawn);
    }
    out.push_str("\r\x1b[J");
    for l in std::mem::take(&mut st.pending) {
        for r in render(&l, w) {
            out.push_str(&r);
            out.push('\n');
        }
    }
    let mut lines: Vec<String> = live(st, elapsed, total, cols)
        .iter()
        .flat_map(|l| render(l, w))
        .collect();
    lines.truncate(rows.max(2) - 1);
    for l in &lines {
        out.push_str(l);
        out.push('\n');
    }
    st.drawn = lines.len();
    out
}

/// Display columns of `s` (control characters count 0; [`sanitize`] has removed them).
pub fn width(s: &str) -> usize {
    s.chars().map(|c| c.width().unwrap_or(0)).sum()
}

/// `s` cut to `w` columns, with `…` when cut.
pub fn fit(s: &str, w: usize) -> String {
    if width(s) <= w {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let cw = c.width().unwrap_or(0);
        if used + cw + 1 > w {
            break;
        }
        used += cw;
        out.push(c);
    }
    if w > 0 {
        out.push('…');
    }
    out
}

/// `s` in lines of at most `w` columns.
fn wrap(s: &str, w: usize) -> Vec<String> {
    let mut v = vec![];
    let mut cur = String::new();
    let mut used = 0;
    for c in s.chars() {
        let cw = c.width().unwrap_or(0);
        if used + cw > w && !cur.is_empty() {
            v.push(std::mem::take(&mut cur));
            used = 0;
        }
        used += cw;
        cur.push(c);
    }
    v.push(cur);
    v
}

/// A line of a step's output made safe to show: what a carriage return would have left
/// visible, without escape sequences (CSI, OSC, DCS and the rest), other control characters
/// or the bidirectional overrides that reorder what follows; tabs become a space.
pub fn sanitize(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let seg = text.rsplit('\r').find(|s| !s.is_empty()).unwrap_or("");
    let mut out = String::with_capacity(seg.len());
    let mut it = seg.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\x1b' => skip_escape(&mut it),
            // The 8-bit CSI: parameters up to a final byte.
            '\u{9b}' => {
                for c in it.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        break;
                    }
                }
            }
            '\t' => out.push(' '),
            '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Skip the rest of an escape sequence whose ESC was just read.
fn skip_escape(it: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    match it.next() {
        // CSI: parameters and intermediates, then a final byte in @..~.
        Some('[') => {
            for c in it.by_ref() {
                if ('\u{40}'..='\u{7e}').contains(&c) {
                    break;
                }
            }
        }
        // OSC, DCS, SOS, PM, APC: a string ended by BEL or ESC \.
        Some(']' | 'P' | 'X' | '^' | '_') => {
            while let Some(c) = it.next() {
                if c == '\x07' {
                    break;
                }
                if c == '\x1b' {
                    if it.peek() == Some(&'\\') {
                        it.next();
                    }
                    break;
                }
            }
        }
        // Two-character sequences (ESC c, ESC 7, …), and charset selection ESC ( B.
        Some('(' | ')' | '*' | '+' | '#' | '%') => {
            it.next();
        }
        _ => {}
    }
}

/// The size of the terminal on `fd`, as (columns, rows).
pub fn terminal_size(fd: std::os::fd::RawFd) -> Option<(usize, usize)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which points at a live,
    // properly aligned local; a bad or non-terminal `fd` only makes the call fail.
    let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0 && ws.ws_row > 0).then(|| (ws.ws_col.into(), ws.ws_row.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_drops_escapes_and_controls() {
        let raw = b"a\x1b[31mred\x1b[0m \x1b]0;title\x07b\x1b]8;;http://x\x1b\\c \x1b[2J\x1b[H\x08\x07d\te";
        assert_eq!(sanitize(raw), "ared bc d e");
        assert_eq!(sanitize(b"10%\r20%\r"), "20%");
        assert_eq!(sanitize("x\u{202e}y\u{9b}2Jz".as_bytes()), "xyz");
        assert_eq!(sanitize(b"\xff\xfeok"), "\u{fffd}\u{fffd}ok");
    }

    #[test]
    fn step_lines_fit_the_width_with_the_time_at_the_edge() {
        let l = Line::Step {
            left: "=> [2/3] RUN a very long command line that goes on".into(),
            right: "12.3s".into(),
        };
        for w in [10, 20, 39, 80] {
            for r in render(&l, w) {
                assert!(width(&r) <= w, "{r:?} wider than {w}");
            }
        }
        let r = &render(&l, 39)[0];
        assert!(r.ends_with(" 12.3s") && r.contains('…'), "{r}");
        let wide = Line::Step {
            left: "=> 漢字漢字漢字漢字漢字漢字".into(),
            right: "1.0s".into(),
        };
        assert!(width(&render(&wide, 15)[0]) <= 15);
    }

    fn running_step(lines: usize) -> Step {
        Step {
            name: "[2/3] RUN make".into(),
            digest: crate::digest::Digest::of_bytes(b"step"),
            started: std::time::SystemTime::now(),
            t0: std::time::Instant::now(),
            took: None,
            completed: None,
            cached: false,
            error: None,
            tail: (0..lines).map(|i| format!("line {i}")).collect(),
        }
    }

    #[test]
    fn the_live_area_fits_the_rows_and_the_next_frame_moves_over_it() {
        let mut st = State::default();
        st.steps.push(running_step(10));
        st.pending.push(Line::Text("a message".into()));
        let first = redraw(&mut st, Duration::from_secs(1), 3, 80, 5);
        assert!(first.starts_with("\r\x1b[J") && first.contains("a message\n"));
        assert_eq!(st.drawn, 4, "rows - 1 lines at most");
        assert!(st.pending.is_empty());
        let second = redraw(&mut st, Duration::from_secs(2), 3, 80, 5);
        assert!(second.starts_with("\x1b[4A\r\x1b[J"), "{second:?}");
        assert!(
            !second.contains("a message"),
            "permanent lines are written once"
        );
        // The step ends: one collapsed line, then only the summary is live.
        st.steps[0].took = Some(Duration::from_millis(1500));
        st.pending.extend(collapsed(&st.steps[0]));
        st.finished = Some(true);
        let last = redraw(&mut st, Duration::from_secs(2), 3, 80, 5);
        assert!(last.contains("=> [2/3] RUN make"), "{last:?}");
        assert!(
            last.trim_end()
                .ends_with("[+] Building 2.0s (1/3) FINISHED"),
            "{last:?}"
        );
        assert!(!last.contains("line 9"), "{last:?}");
        assert_eq!(st.drawn, 1);
    }

    #[test]
    fn text_wraps_at_the_width() {
        let v = render(&Line::Text("x".repeat(25)), 10);
        assert_eq!(v, vec!["x".repeat(10), "x".repeat(10), "x".repeat(5)]);
    }
}
