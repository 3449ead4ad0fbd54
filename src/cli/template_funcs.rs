//! The functions a `--format` template can call: docker's own (`json`, `join`, `split`,
//! `lower`, `upper`, `title`, `pad`, `truncate`) and Go's builtins that scripts use.

use serde_json::Value;

use super::template_exec::{go_string, type_name};

type R = Result<Value, String>;

fn want(args: &[Value], n: usize, f: &str) -> Result<(), String> {
    if args.len() != n {
        return Err(format!(
            "wrong number of args for {f}: want {n} got {}",
            args.len()
        ));
    }
    Ok(())
}

fn s(v: &Value) -> String {
    go_string(v)
}

fn int(v: &Value) -> Result<i64, String> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .ok_or_else(|| "bad number".into()),
        other => Err(format!("expected an integer, got {}", type_name(other))),
    }
}

pub(super) fn call(f: &str, a: &[Value]) -> R {
    match f {
        "json" => {
            want(a, 1, f)?;
            serde_json::to_string(&a[0])
                .map(Value::String)
                .map_err(|e| e.to_string())
        }
        "join" => {
            want(a, 2, f)?;
            let Value::Array(items) = &a[0] else {
                return Err(format!("join wants a list, got {}", type_name(&a[0])));
            };
            Ok(Value::String(
                items.iter().map(s).collect::<Vec<_>>().join(&s(&a[1])),
            ))
        }
        "split" => {
            want(a, 2, f)?;
            Ok(Value::Array(
                s(&a[0])
                    .split(&s(&a[1]))
                    .map(|x| Value::String(x.into()))
                    .collect(),
            ))
        }
        "lower" => {
            want(a, 1, f)?;
            Ok(Value::String(s(&a[0]).to_lowercase()))
        }
        "upper" => {
            want(a, 1, f)?;
            Ok(Value::String(s(&a[0]).to_uppercase()))
        }
        "title" => {
            want(a, 1, f)?;
            Ok(Value::String(title(&s(&a[0]))))
        }
        "pad" => {
            want(a, 3, f)?;
            let (l, r) = (int(&a[1])?.max(0) as usize, int(&a[2])?.max(0) as usize);
            Ok(Value::String(format!(
                "{}{}{}",
                " ".repeat(l),
                s(&a[0]),
                " ".repeat(r)
            )))
        }
        "truncate" => {
            want(a, 2, f)?;
            let n = int(&a[1])?.max(0) as usize;
            Ok(Value::String(s(&a[0]).chars().take(n).collect()))
        }
        "len" => {
            want(a, 1, f)?;
            match &a[0] {
                Value::Array(x) => Ok(Value::from(x.len())),
                Value::Object(x) => Ok(Value::from(x.len())),
                Value::String(x) => Ok(Value::from(x.len())),
                other => Err(format!("len of {}", type_name(other))),
            }
        }
        "index" => index(a),
        "slice" => slice(a),
        "print" => Ok(Value::String(a.iter().map(s).collect::<Vec<_>>().join(""))),
        "println" => Ok(Value::String(
            a.iter().map(s).collect::<Vec<_>>().join(" ") + "\n",
        )),
        "printf" => printf(a),
        "urlquery" => Ok(Value::String(urlquery(
            &a.iter().map(s).collect::<String>(),
        ))),
        "not" => {
            want(a, 1, f)?;
            Ok(Value::Bool(!truth(&a[0])))
        }
        "and" => Ok(a
            .iter()
            .find(|v| !truth(v))
            .or(a.last())
            .cloned()
            .unwrap_or(Value::Null)),
        "or" => Ok(a
            .iter()
            .find(|v| truth(v))
            .or(a.last())
            .cloned()
            .unwrap_or(Value::Null)),
        "eq" => {
            if a.len() < 2 {
                return Err("eq wants at least 2 arguments".into());
            }
            Ok(Value::Bool(a[1..].iter().any(|x| same(&a[0], x))))
        }
        "ne" => {
            want(a, 2, f)?;
            Ok(Value::Bool(!same(&a[0], &a[1])))
        }
        "lt" | "le" | "gt" | "ge" => {
            want(a, 2, f)?;
            let o = compare(&a[0], &a[1])?;
            Ok(Value::Bool(match f {
                "lt" => o.is_lt(),
                "le" => o.is_le(),
                "gt" => o.is_gt(),
                _ => o.is_ge(),
            }))
        }
        _ => Err(format!("function {f:?} not defined")),
    }
}

/// Go's url.QueryEscape, for the bytes scripts pass.
fn urlquery(t: &str) -> String {
    t.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn truth(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty() && s != "<no value>",
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn same(x: &Value, y: &Value) -> bool {
    match (x, y) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => x == y,
    }
}

fn compare(x: &Value, y: &Value) -> Result<std::cmp::Ordering, String> {
    match (x, y) {
        (Value::Number(a), Value::Number(b)) => a
            .as_f64()
            .partial_cmp(&b.as_f64())
            .ok_or_else(|| "incomparable numbers".into()),
        (Value::String(a), Value::String(b)) => Ok(a.cmp(b)),
        _ => Err(format!(
            "incompatible types for comparison: {} and {}",
            type_name(x),
            type_name(y)
        )),
    }
}

fn title(t: &str) -> String {
    let mut out = String::new();
    let mut start = true;
    for c in t.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric();
    }
    out
}

fn index(a: &[Value]) -> R {
    let Some(mut cur) = a.first().cloned() else {
        return Err("index wants at least 1 argument".into());
    };
    for k in &a[1..] {
        cur = match (&cur, k) {
            (Value::Array(x), Value::Number(_)) => {
                let i = int(k)?;
                x.get(usize::try_from(i).map_err(|_| format!("index out of range: {i}"))?)
                    .cloned()
                    .ok_or_else(|| format!("index out of range: {i}"))?
            }
            // A missing key, or indexing what is absent (an image without labels), gives
            // "" as Go's index does on docker's map[string]string fields.
            (Value::Object(o), Value::String(key)) => {
                o.get(key).cloned().unwrap_or(Value::String(String::new()))
            }
            (Value::Null, _) => Value::String(String::new()),
            (Value::String(s), _) if s == "<no value>" => Value::String(String::new()),
            (c, k) => {
                return Err(format!(
                    "can't index item of type {} with {}",
                    type_name(c),
                    type_name(k)
                ));
            }
        };
    }
    Ok(cur)
}

fn slice(a: &[Value]) -> R {
    let Some(x) = a.first() else {
        return Err("slice wants at least 1 argument".into());
    };
    let ints: Vec<usize> = a[1..]
        .iter()
        .map(|v| int(v).map(|i| i.max(0) as usize))
        .collect::<Result<_, _>>()?;
    match x {
        Value::String(st) => {
            let (from, to) = (
                ints.first().copied().unwrap_or(0),
                ints.get(1).copied().unwrap_or(st.len()),
            );
            st.get(from..to)
                .map(|v| Value::String(v.into()))
                .ok_or_else(|| "slice out of range".into())
        }
        Value::Array(v) => {
            let (from, to) = (
                ints.first().copied().unwrap_or(0),
                ints.get(1).copied().unwrap_or(v.len()),
            );
            v.get(from..to)
                .map(|v| Value::Array(v.to_vec()))
                .ok_or_else(|| "slice out of range".into())
        }
        other => Err(format!("can't slice item of type {}", type_name(other))),
    }
}

/// Go's printf for the verbs scripts use: %s %v %d %f %q %t %x and %%, with width,
/// precision and `-`.
fn printf(a: &[Value]) -> R {
    let Some(fmt) = a.first() else {
        return Err("printf wants a format".into());
    };
    let fmt = s(fmt);
    let mut args = a[1..].iter();
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut left = false;
        let mut width = String::new();
        let mut prec: Option<String> = None;
        while let Some(&n) = chars.peek() {
            match (n, prec.as_mut()) {
                ('-', None) => left = true,
                ('.', None) => prec = Some(String::new()),
                (d, None) if d.is_ascii_digit() => width.push(d),
                (d, Some(p)) if d.is_ascii_digit() => p.push(d),
                _ => break,
            }
            chars.next();
        }
        let prec: Option<usize> = prec.map(|p| p.parse().unwrap_or(0));
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(v) = args.next() else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        let text = match verb {
            'q' => serde_json::to_string(&s(v)).unwrap_or_default(),
            'x' => match v {
                Value::Number(_) => format!("{:x}", int(v)?),
                _ => hex::encode(s(v)),
            },
            'd' => int(v)
                .map(|i| i.to_string())
                .unwrap_or_else(|_| format!("%!d({})", s(v))),
            'f' => match v.as_f64() {
                Some(x) => format!("{x:.p$}", p = prec.unwrap_or(6)),
                None => format!("%!f({})", s(v)),
            },
            't' => s(v),
            _ => match prec {
                Some(p) => s(v).chars().take(p).collect(),
                None => s(v),
            },
        };
        let w: usize = width.parse().unwrap_or(0);
        out.push_str(&if left {
            format!("{text:<w$}")
        } else {
            format!("{text:>w$}")
        });
    }
    Ok(Value::String(out))
}
