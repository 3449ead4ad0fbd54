//! Instruction, flag and rule names in one place, plus the edit-distance helper behind every
//! "did you mean …" hint. Keeping the spellings here means the parser, the linter and the dump
//! can never disagree about what `HEALTHCHECK` or `--keep-git-dir` is called.

pub const ADD: &str = "ADD";
pub const ARG: &str = "ARG";
pub const CMD: &str = "CMD";
pub const COPY: &str = "COPY";
pub const ENTRYPOINT: &str = "ENTRYPOINT";
pub const ENV: &str = "ENV";
pub const EXPOSE: &str = "EXPOSE";
pub const FROM: &str = "FROM";
pub const HEALTHCHECK: &str = "HEALTHCHECK";
pub const LABEL: &str = "LABEL";
pub const MAINTAINER: &str = "MAINTAINER";
pub const ONBUILD: &str = "ONBUILD";
pub const RUN: &str = "RUN";
pub const SHELL: &str = "SHELL";
pub const STOPSIGNAL: &str = "STOPSIGNAL";
pub const USER: &str = "USER";
pub const VOLUME: &str = "VOLUME";
pub const WORKDIR: &str = "WORKDIR";

/// Every instruction Docker documents, for lookups and suggestions.
pub const INSTRUCTIONS: &[&str] = &[
    ADD,
    ARG,
    CMD,
    COPY,
    ENTRYPOINT,
    ENV,
    EXPOSE,
    FROM,
    HEALTHCHECK,
    LABEL,
    MAINTAINER,
    ONBUILD,
    RUN,
    SHELL,
    STOPSIGNAL,
    USER,
    VOLUME,
    WORKDIR,
];

/// Instructions whose arguments may carry heredocs (as in BuildKit).
pub const HEREDOC_INSTRUCTIONS: &[&str] = &[ADD, COPY, RUN];

/// Flags each instruction accepts; anything else is an "unknown flag".
pub fn allowed_flags(instruction: &str) -> &'static [&'static str] {
    match instruction {
        FROM => &["platform"],
        RUN => &["mount", "network", "security"],
        COPY => &["from", "chown", "chmod", "link", "exclude", "parents"],
        ADD => &[
            "chown",
            "chmod",
            "link",
            "exclude",
            "checksum",
            "keep-git-dir",
        ],
        HEALTHCHECK => &[
            "interval",
            "timeout",
            "start-period",
            "start-interval",
            "retries",
        ],
        _ => &[],
    }
}

/// Keys of `RUN --mount=…`, with their aliases folded to the first spelling.
pub const MOUNT_KEYS: &[&str] = &[
    "type",
    "id",
    "target",
    "dst",
    "destination",
    "source",
    "src",
    "from",
    "sharing",
    "mode",
    "uid",
    "gid",
    "ro",
    "readonly",
    "rw",
    "readwrite",
    "required",
    "env",
    "size",
];

/// ARGs usable without declaring them; the proxy ones are passed to RUN but are never part of
/// the cache key in Docker, and we follow that.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// ARGs the builder defines in the global scope (usable in FROM without a declaration).
pub const PLATFORM_ARGS: &[&str] = &[
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
];

/// Stage names that would shadow something the builder gives a meaning to.
pub const RESERVED_STAGE_NAMES: &[&str] = &["scratch", "context"];

/// Lint rule names, spelled as BuildKit spells them where the rules overlap.
pub mod rule {
    pub const JSON_ARGS_RECOMMENDED: &str = "JSONArgsRecommended";
    pub const LEGACY_KEY_VALUE_FORMAT: &str = "LegacyKeyValueFormat";
    pub const MAINTAINER_DEPRECATED: &str = "MaintainerDeprecated";
    pub const STAGE_NAME_CASING: &str = "StageNameCasing";
    pub const FROM_AS_CASING: &str = "FromAsCasing";
    pub const DUPLICATE_STAGE_NAME: &str = "DuplicateStageName";
    pub const RESERVED_STAGE_NAME: &str = "ReservedStageName";
    pub const UNDEFINED_ARG_IN_FROM: &str = "UndefinedArgInFrom";
    pub const UNDEFINED_VAR: &str = "UndefinedVar";
    pub const WORKDIR_RELATIVE_PATH: &str = "WorkdirRelativePath";
    pub const CONSISTENT_INSTRUCTION_CASING: &str = "ConsistentInstructionCasing";
    pub const MULTIPLE_INSTRUCTIONS_DISALLOWED: &str = "MultipleInstructionsDisallowed";
    pub const NO_EMPTY_CONTINUATION: &str = "NoEmptyContinuation";
    pub const SECRETS_USED_IN_ARG_OR_ENV: &str = "SecretsUsedInArgOrEnv";
    pub const INVALID_DEFAULT_ARG_IN_FROM: &str = "InvalidDefaultArgInFrom";

    pub const ALL: &[&str] = &[
        JSON_ARGS_RECOMMENDED,
        LEGACY_KEY_VALUE_FORMAT,
        MAINTAINER_DEPRECATED,
        STAGE_NAME_CASING,
        FROM_AS_CASING,
        DUPLICATE_STAGE_NAME,
        RESERVED_STAGE_NAME,
        UNDEFINED_ARG_IN_FROM,
        UNDEFINED_VAR,
        WORKDIR_RELATIVE_PATH,
        CONSISTENT_INSTRUCTION_CASING,
        MULTIPLE_INSTRUCTIONS_DISALLOWED,
        NO_EMPTY_CONTINUATION,
        SECRETS_USED_IN_ARG_OR_ENV,
        INVALID_DEFAULT_ARG_IN_FROM,
    ];
}

/// Edit distance counting insertions, deletions, substitutions and swaps of neighbours
/// (optimal string alignment), since `chwon` for `chown` is one slip, not two. Inputs are
/// short names, so the O(n·m) table is fine.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    d[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j - 1] + cost)
                .min(d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// The closest candidate, if it is close enough to be a plausible typo: at most a third of
/// the word's length (and at least 1, at most 3) edits, compared case-insensitively.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let w = word.to_ascii_lowercase();
    let limit = (w.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (edit_distance(&w, &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(suggest("RUNN", INSTRUCTIONS.iter().copied()), Some(RUN));
        assert_eq!(
            suggest("workdri", INSTRUCTIONS.iter().copied()),
            Some(WORKDIR)
        );
        assert_eq!(suggest("XYZZY", INSTRUCTIONS.iter().copied()), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("chwon", "chown"), 1);
    }
}
