//! Property tests: no input may panic the parser, the expander or the ignore matcher, and
//! for generated valid Boxfiles the dump re-parses to the same instructions.

use std::collections::BTreeMap;
use std::path::Path;

use boxkit::boxfile::{self, GlobalScope, IgnoreMatcher, shell::Lex};
use proptest::prelude::*;

/// Text biased toward the characters the grammar cares about.
fn tricky_text() -> impl Strategy<Value = String> {
    let atoms = prop_oneof![
        Just("FROM ".to_string()),
        Just("RUN ".to_string()),
        Just("COPY ".to_string()),
        Just("ENV ".to_string()),
        Just("ARG ".to_string()),
        Just("ONBUILD ".to_string()),
        Just("HEALTHCHECK ".to_string()),
        Just("--mount=type=cache,target=".to_string()),
        Just("<<EOF".to_string()),
        Just("<<-'X'".to_string()),
        Just("EOF".to_string()),
        Just("\n".to_string()),
        Just("\t".to_string()),
        Just("\\\n".to_string()),
        Just("`".to_string()),
        Just("# escape=`\n".to_string()),
        Just("${A:-".to_string()),
        Just("${A#*".to_string()),
        Just("${A//x/".to_string()),
        Just("}".to_string()),
        Just("$".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("[\"a\",".to_string()),
        Just("]".to_string()),
        Just("=".to_string()),
        Just("**/".to_string()),
        Just("!".to_string()),
        Just("[a-".to_string()),
        "[a-zA-Z0-9 /._-]{0,6}",
        any::<char>().prop_map(|c| c.to_string()),
    ];
    prop::collection::vec(atoms, 0..40).prop_map(|v| v.concat())
}

fn exercise(src: &str) {
    if let Ok(bf) = boxfile::parse(src, Path::new("Boxfile")) {
        let _ = boxfile::dump(&bf);
        let args: BTreeMap<String, String> = [("A".to_string(), "x y".to_string())].into();
        if let Ok(g) = GlobalScope::new(&bf, &args, &BTreeMap::new()) {
            for s in &bf.stages {
                let _ = g.expand_from(&s.from.node);
                let mut env = g.stage_env();
                for i in &s.instructions {
                    let _ = env.step(&i.node);
                }
            }
        }
    } else if let Err(e) = boxfile::parse(src, Path::new("Boxfile")) {
        let _ = e.render();
    }
    let env = |k: &str| (k == "A").then(|| "a/b/c".to_string());
    let _ = Lex::new('\\').process(src, &env);
    let _ = Lex::new('`').process(src, &env);
    let m = IgnoreMatcher::parse(src);
    for p in ["a", "a/b", "x/y/z.log", src] {
        let _ = m.matches(p, false);
        let _ = m.may_contain_exceptions(p);
    }
}

fn word() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,6}"
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(word(), 1..4).prop_map(|v| format!("/{}", v.join("/")))
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        word(),
        word().prop_map(|w| format!("${w}")),
        (word(), word()).prop_map(|(a, b)| format!("${{{a}:-{b}}}")),
        (word(), word()).prop_map(|(a, b)| format!("\"{a} {b}\"")),
        word().prop_map(|w| format!("'${w}'")),
    ]
}

fn instruction() -> impl Strategy<Value = String> {
    prop_oneof![
        (word(), prop::collection::vec(word(), 0..4))
            .prop_map(|(c, a)| format!("RUN {c} {}", a.join(" "))),
        prop::collection::vec(word(), 1..4)
            .prop_map(|a| format!("CMD {}", serde_json::to_string(&a).unwrap())),
        prop::collection::vec(word(), 1..4)
            .prop_map(|a| format!("ENTRYPOINT {}", serde_json::to_string(&a).unwrap())),
        (path(), path(), prop::option::of(word())).prop_map(|(a, b, c)| match c {
            Some(c) => format!("COPY --from={c} --chmod=644 {a} {b}"),
            None => format!("COPY --link {a} {b}"),
        }),
        (path(), path()).prop_map(|(a, b)| format!("ADD https://example.com{a} {b}")),
        prop::collection::vec((word(), value()), 1..4).prop_map(|kv| format!(
            "ENV {}",
            kv.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        )),
        (word(), word()).prop_map(|(k, v)| format!("ENV {k} {v} more")),
        (word(), prop::option::of(value())).prop_map(|(k, v)| match v {
            Some(v) => format!("ARG {k}={v}"),
            None => format!("ARG {k}"),
        }),
        path().prop_map(|p| format!("WORKDIR {p}")),
        word().prop_map(|u| format!("USER {u}")),
        (word(), value()).prop_map(|(k, v)| format!("LABEL {k}={v}")),
        (1u16..65535).prop_map(|p| format!("EXPOSE {p}/tcp")),
        path().prop_map(|p| format!("VOLUME [\"{p}\"]")),
        Just("SHELL [\"/bin/bash\", \"-c\"]".to_string()),
        Just("STOPSIGNAL SIGTERM".to_string()),
        (1u32..100, 0u32..5).prop_map(|(s, r)| format!(
            "HEALTHCHECK --interval={s}s --retries={r} CMD curl -f localhost"
        )),
        path().prop_map(|p| format!("ONBUILD COPY . {p}")),
        (path(), word()).prop_map(|(t, c)| format!(
            "RUN --mount=type=cache,target={t},sharing=locked --network=none {c}"
        )),
        (word(), word()).prop_map(|(a, b)| format!("RUN <<EOF\n{a}\n\t{b}\nEOF")),
        (word(), path()).prop_map(|(a, p)| format!("COPY <<-END {p}\n\t{a}\nEND")),
        (word(), word()).prop_map(|(a, b)| format!("RUN {a} \\\n  # note\n  {b}")),
    ]
}

fn boxfile_src() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(word(), 0..3),
        prop::collection::vec(
            (
                word(),
                prop::option::of(word()),
                prop::collection::vec(instruction(), 0..8),
            ),
            1..4,
        ),
    )
        .prop_map(|(globals, stages)| {
            let mut s = String::new();
            for g in globals {
                s.push_str(&format!("ARG {g}=1\n"));
            }
            for (img, name, body) in stages {
                match name {
                    Some(n) => s.push_str(&format!("FROM {img}:latest AS {n}\n")),
                    None => s.push_str(&format!("FROM {img}\n")),
                }
                for i in body {
                    s.push_str(&i);
                    s.push('\n');
                }
            }
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        exercise(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn tricky_text_never_panics(src in tricky_text()) {
        exercise(&src);
    }

    #[test]
    fn dump_round_trips(src in boxfile_src()) {
        let bf = boxfile::parse(&src, Path::new("Boxfile"))
            .map_err(|e| TestCaseError::fail(format!("{src}\n{}", e.render())))?;
        let dumped = boxfile::dump(&bf);
        let again = boxfile::parse(&dumped, Path::new("dump"))
            .map_err(|e| TestCaseError::fail(format!("{dumped}\n{}", e.render())))?;
        prop_assert!(again.same_instructions(&bf), "source:\n{}\ndump:\n{}", src, dumped);
        // The dump is a fixed point.
        prop_assert_eq!(boxfile::dump(&again), dumped);
    }
}
