//! Running a parsed template (template.rs) against a serde_json value, with Go's printing
//! rules (`[a b]`, `map[k:v]` with sorted keys, `<no value>`) and docker's functions
//! (`json`, `join`, `split`, `lower`, `upper`, `title`, `pad`, `truncate`) beside Go's
//! builtins (`index`, `len`, `printf`, `eq`, `not`, `and`, `or`, ...).

use serde_json::Value;

use super::template::{Arg, Node, Pipe, Template, TemplateError};

/// A missing map key: Go prints it as `<no value>`; a JSON null prints as `<nil>`.
const NO_VALUE: &str = "<no value>";

struct Exec<'a> {
    t: &'a Template,
    vars: Vec<(String, Value)>,
}

impl Template {
    /// Render against `data`.
    pub fn render(&self, data: &Value) -> Result<String, TemplateError> {
        let mut e = Exec {
            t: self,
            vars: vec![("".into(), data.clone())],
        };
        let mut out = String::new();
        e.nodes(&self.nodes, data, &mut out)?;
        Ok(out)
    }
}

/// Go's truth: false, 0, "", nil and empty lists and maps are false.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// How Go's fmt prints a value with `%v`.
pub fn go_string(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(go_string).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}:{}", go_string(&o[*k])))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

/// Marker for a missing key, so `{{.Nope}}` prints `<no value>` but `{{if .Nope}}` is false.
fn missing() -> Value {
    Value::String(NO_VALUE.into())
}

impl Exec<'_> {
    fn err(&self, pos: usize, msg: impl Into<String>) -> TemplateError {
        self.t.err(pos, msg)
    }

    fn nodes(
        &mut self,
        nodes: &[Node],
        dot: &Value,
        out: &mut String,
    ) -> Result<(), TemplateError> {
        for n in nodes {
            let depth = self.vars.len();
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipe(p, dot)?;
                    if p.decl.is_empty() {
                        out.push_str(&go_string(&v));
                    }
                    // A declaration lives to the end of the enclosing block.
                    continue;
                }
                Node::If(p, then, els) => {
                    let v = self.pipe(p, dot)?;
                    let branch = if truthy(&v) && !is_missing(&v) {
                        then
                    } else {
                        els
                    };
                    self.nodes(branch, dot, out)?;
                }
                Node::With(p, body, els) => {
                    let v = self.pipe(p, dot)?;
                    if truthy(&v) && !is_missing(&v) {
                        self.nodes(body, &v, out)?;
                    } else {
                        self.nodes(els, dot, out)?;
                    }
                }
                Node::Range(p, body, els) => self.range(p, body, els, dot, out)?,
            }
            self.vars.truncate(depth);
        }
        Ok(())
    }

    fn range(
        &mut self,
        p: &Pipe,
        body: &[Node],
        els: &[Node],
        dot: &Value,
        out: &mut String,
    ) -> Result<(), TemplateError> {
        let mut bare = p.clone();
        bare.decl.clear();
        let v = self.pipe(&bare, dot)?;
        let items: Vec<(Value, Value)> = match &v {
            Value::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, x)| (Value::from(i), x.clone()))
                .collect(),
            Value::Object(o) => {
                // Go ranges over a map in key order.
                let mut keys: Vec<&String> = o.keys().collect();
                keys.sort();
                keys.into_iter()
                    .map(|k| (Value::String(k.clone()), o[k].clone()))
                    .collect()
            }
            Value::Null => vec![],
            Value::String(s) if s == NO_VALUE => vec![],
            Value::Number(n) if n.as_u64().is_some() => (0..n.as_u64().unwrap_or(0))
                .map(|i| (Value::from(i), Value::from(i)))
                .collect(),
            other => {
                return Err(self.err(
                    p.pos,
                    format!("range can't iterate over {}", go_string(other)),
                ));
            }
        };
        if items.is_empty() {
            return self.nodes(els, dot, out);
        }
        for (k, x) in items {
            let depth = self.vars.len();
            match p.decl.as_slice() {
                [] => {}
                [v] => self.vars.push((v.clone(), x.clone())),
                [kn, vn, ..] => {
                    self.vars.push((kn.clone(), k));
                    self.vars.push((vn.clone(), x.clone()));
                }
            }
            self.nodes(body, &x, out)?;
            self.vars.truncate(depth);
        }
        Ok(())
    }

    fn pipe(&mut self, p: &Pipe, dot: &Value) -> Result<Value, TemplateError> {
        let mut last: Option<Value> = None;
        for c in &p.cmds {
            let v = match &c.args[0] {
                Arg::Func(f) => {
                    let mut args = vec![];
                    for a in &c.args[1..] {
                        args.push(self.arg(a, dot, c.pos)?);
                    }
                    if let Some(l) = last.take() {
                        args.push(l);
                    }
                    super::template_funcs::call(f, &args)
                        .map_err(|m| self.err(c.pos, format!("error calling {f}: {m}")))?
                }
                Arg::Field(f) if c.args.len() > 1 => self.method(f, &c.args[1..], dot, c.pos)?,
                a => self.arg(a, dot, c.pos)?,
            };
            last = Some(v);
        }
        let v = last.unwrap_or(Value::Null);
        for d in &p.decl {
            self.vars.push((d.clone(), v.clone()));
        }
        Ok(v)
    }

    fn arg(&mut self, a: &Arg, dot: &Value, pos: usize) -> Result<Value, TemplateError> {
        Ok(match a {
            Arg::Field(f) => self.fields(dot, f, pos)?,
            Arg::Var(name, f) => {
                let Some((_, v)) = self.vars.iter().rev().find(|(n, _)| n == name) else {
                    return Err(self.err(pos, format!("undefined variable ${name}")));
                };
                let v = v.clone();
                self.fields(&v, f, pos)?
            }
            Arg::Str(s) => Value::String(s.clone()),
            Arg::Num(n) => {
                if n.fract() == 0.0 && n.abs() < 9.0e15 {
                    Value::from(*n as i64)
                } else {
                    serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number)
                }
            }
            Arg::Bool(b) => Value::Bool(*b),
            Arg::Nil => Value::Null,
            Arg::Func(f) => super::template_funcs::call(f, &[])
                .map_err(|m| self.err(pos, format!("error calling {f}: {m}")))?,
            Arg::Sub(p, f) => {
                let v = self.pipe(p, dot)?;
                self.fields(&v, f, pos)?
            }
        })
    }

    /// `.Label "key"`, the one method docker's rows offer: a label's value from `Labels`
    /// (a map, or docker's `k=v,k2=v2` string).
    fn method(
        &mut self,
        f: &[String],
        args: &[Arg],
        dot: &Value,
        pos: usize,
    ) -> Result<Value, TemplateError> {
        let (name, recv) = f.split_last().expect("a method call has a name");
        if name != "Label" || args.len() != 1 {
            return Err(self.err(pos, format!("can't give arguments to field {name}")));
        }
        let key = go_string(&self.arg(&args[0], dot, pos)?);
        let labels = self
            .fields(dot, recv, pos)?
            .get("Labels")
            .cloned()
            .unwrap_or(Value::Null);
        Ok(Value::String(match labels {
            Value::Object(o) => o.get(&key).map(go_string).unwrap_or_default(),
            Value::String(s) => s
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
                .unwrap_or_default(),
            _ => String::new(),
        }))
    }

    fn fields(&self, v: &Value, names: &[String], pos: usize) -> Result<Value, TemplateError> {
        let mut cur = v.clone();
        for n in names {
            cur = match &cur {
                Value::Object(o) => o.get(n).cloned().unwrap_or_else(missing),
                Value::Null => return Ok(missing()),
                Value::String(s) if s == NO_VALUE => return Ok(missing()),
                other => {
                    return Err(self.err(
                        pos,
                        format!("can't evaluate field {n} in type {}", type_name(other)),
                    ));
                }
            };
        }
        Ok(cur)
    }
}

fn is_missing(v: &Value) -> bool {
    matches!(v, Value::String(s) if s == NO_VALUE)
}

pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nil",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

#[cfg(test)]
mod tests {
    use super::super::template::Template;
    use serde_json::json;

    fn r(t: &str, v: &serde_json::Value) -> String {
        Template::parse("--format", t).unwrap().render(v).unwrap()
    }

    fn data() -> serde_json::Value {
        json!({"Id": "abc", "Config": {"Env": ["A=1", "B=2"], "Labels": {"y": "2", "x": "1"}, "Cmd": null},
               "State": {"Running": true, "Pid": 12, "Status": "running"}, "Size": 4261000, "Name": "/web"})
    }

    #[test]
    fn fields_and_nested_fields() {
        let d = data();
        assert_eq!(
            r("{{.Id}} {{.State.Status}} {{.State.Pid}}", &d),
            "abc running 12"
        );
        assert_eq!(r("{{.Config.Env}}", &d), "[A=1 B=2]");
        assert_eq!(r("{{.Config.Labels}}", &d), "map[x:1 y:2]");
        assert_eq!(
            r("{{.Nope}}|{{.Config.Cmd}}|{{.Nope.Deeper}}", &d),
            "<no value>|<nil>|<no value>"
        );
        assert_eq!(r("{{.}}", &json!("plain")), "plain");
    }

    #[test]
    fn json_join_case_index_len() {
        let d = data();
        assert_eq!(r("{{json .Config.Env}}", &d), r#"["A=1","B=2"]"#);
        assert_eq!(
            r("{{json .State}}", &d),
            r#"{"Pid":12,"Running":true,"Status":"running"}"#
        );
        assert_eq!(r(r#"{{join .Config.Env ","}}"#, &d), "A=1,B=2");
        assert_eq!(
            r("{{upper .Id}} {{lower \"XY\"}} {{.Id | upper}}", &d),
            "ABC xy ABC"
        );
        assert_eq!(
            r(
                r#"{{index .Config.Env 1}} {{index .Config.Labels "x"}}"#,
                &d
            ),
            "B=2 1"
        );
        assert_eq!(r("{{len .Config.Env}}", &d), "2");
        // An absent map or key indexes to "", as Go's index on docker's label maps.
        assert_eq!(
            r(
                r#"[{{index .Config.Labels "nope"}}][{{index .Config.Nope "x"}}]"#,
                &d
            ),
            "[][]"
        );
        assert_eq!(
            r(r#"{{if index .Config.Nope "x"}}y{{else}}n{{end}}"#, &d),
            "n"
        );
        assert_eq!(
            r(r#"{{printf "%s-%d|%-5s|" .Id .State.Pid "a"}}"#, &d),
            "abc-12|a    |"
        );
        assert_eq!(
            r(r#"{{range split "a:b" ":"}}<{{.}}>{{end}}"#, &d),
            "<a><b>"
        );
        assert_eq!(
            r(r#"{{title "hello world"}} {{truncate .Id 2}}"#, &d),
            "Hello World ab"
        );
    }

    #[test]
    fn range_if_with_and_variables() {
        let d = data();
        assert_eq!(r("{{range .Config.Env}}[{{.}}]{{end}}", &d), "[A=1][B=2]");
        assert_eq!(
            r(
                "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}",
                &d
            ),
            "x=1;y=2;"
        );
        assert_eq!(
            r("{{range $i, $e := .Config.Env}}{{$i}}:{{$e}} {{end}}", &d),
            "0:A=1 1:B=2 "
        );
        assert_eq!(r("{{range .Config.Cmd}}x{{else}}none{{end}}", &d), "none");
        assert_eq!(r("{{if .State.Running}}up{{else}}down{{end}}", &d), "up");
        assert_eq!(
            r(
                "{{if .Nope}}y{{else if eq .Id \"abc\"}}abc{{else}}n{{end}}",
                &d
            ),
            "abc"
        );
        assert_eq!(r("{{with .State}}{{.Pid}}{{end}}", &d), "12");
        assert_eq!(
            r("{{$n := .Name}}{{range .Config.Env}}{{$n}}{{end}}", &d),
            "/web/web"
        );
        assert_eq!(r("{{range .Config.Env}}{{$.Id}}{{end}}", &d), "abcabc");
        assert_eq!(
            r("{{if and .State.Running (gt .State.Pid 10)}}big{{end}}", &d),
            "big"
        );
        assert_eq!(r("a {{- /* note */ -}} b {{- .Id}}", &d), "ababc");
    }

    #[test]
    fn docker_inspect_doc_examples() {
        let d = json!({"NetworkSettings": {"Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}},
                       "State": {"ExitCode": 3}, "Config": {"Image": "busybox"}});
        assert_eq!(
            r(
                "{{range $p, $conf := .NetworkSettings.Ports}} {{$p}} -> {{(index $conf 0).HostPort}} {{end}}",
                &d
            ),
            " 80/tcp -> 8080 "
        );
        assert_eq!(r("{{.State.ExitCode}} {{.Config.Image}}", &d), "3 busybox");
        assert_eq!(
            r(
                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                &d
            ),
            ""
        );
        assert_eq!(
            r(r#"{{printf "%.2f|%5.1f|%t" 1.234 2.25 true}}"#, &d),
            "1.23|  2.2|true"
        );
    }

    #[test]
    fn errors_name_the_position() {
        let e = Template::parse("--format", "ok {{.Id").unwrap_err();
        assert_eq!((e.line, e.col), (1, 4));
        assert!(e.msg.contains("unclosed action"), "{e}");
        let e = Template::parse("--format", "x\n  {{nofunc .Id}}").unwrap_err();
        assert_eq!((e.line, e.col), (2, 5));
        assert!(
            e.to_string().contains("function \"nofunc\" not defined"),
            "{e}"
        );
        for (t, col, msg) in [
            ("{{$x := }}", 3, "missing value for command"),
            ("{{)}}", 3, "unexpected right paren"),
            ("{{.A.}}", 5, "unexpected . after term"),
            ("{{(.A).B.}}", 9, "unexpected . after term"),
            ("{{.A , .B}}", 6, "unexpected <,> in command"),
            ("{{.A | .B}}", 8, "non-function command in a pipeline"),
            ("{{end}}", 3, "unexpected {{end}}"),
            ("{{define \"x\"}}{{end}}", 3, "{{define}} is not supported"),
        ] {
            let e = Template::parse("--format", t).unwrap_err();
            assert_eq!((e.col, e.msg.as_str()), (col, msg), "{t}");
        }
        let e = Template::parse("--format", "{{if .A}}x").unwrap_err();
        assert!(e.msg.contains("no {{end}}"), "{e}");
        let e = Template::parse("--format", "{{.Id.X}}")
            .unwrap()
            .render(&data())
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("can't evaluate field X in type string"),
            "{e}"
        );
        assert_eq!((e.line, e.col), (1, 3));
    }
}

#[cfg(test)]
mod props {
    use super::super::template::Template;
    use proptest::prelude::*;

    proptest! {
        /// Any flag text parses or fails with an error; whatever parses renders or fails.
        #[test]
        fn never_panics(parts in proptest::collection::vec(prop_oneof![
            Just("{{"), Just("}}"), Just("{{-"), Just(" -}}"), Just(".A"), Just(".B.C"), Just("$"),
            Just("$x := "), Just("range "), Just("if "), Just("else"), Just("end"), Just("with "),
            Just("("), Just(")"), Just("|"), Just("json"), Just("index"), Just("\""), Just("`"),
            Just(" "), Just("é"), Just("1"), Just("-2.5"), Just(","), Just("/*"), Just("*/"),
            Just("printf \"%-3d\""), Just("eq"), Just(".Label"), Just("\\"),
        ], 0..24)) {
            let src: String = parts.concat();
            let data = serde_json::json!({"A": [1, "x", null], "B": {"C": {"k": "v"}}, "Labels": "a=b"});
            if let Ok(t) = Template::parse("--format", &src) {
                let _ = t.render(&data);
            }
        }
    }
}
