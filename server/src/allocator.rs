//! The global allocator, mimalloc, and its tuning — by mimalloc's own, named
//! environment variables.
//!
//! mimalloc is about 15 % less CPU per request than glibc's malloc (BENCHMARKS.md).
//! Its defaults (arenas committed up front, freed memory returned after a delay) held
//! 400 MB at 10,000 open streams where glibc held 300 MB; with [`TUNING`], 260 MB.
//!
//! mimalloc reads its options once, from `MIMALLOC_*` variables, when it starts —
//! before `main`. So a server process that finds one of them unset starts itself
//! again (`exec`: same process id, same arguments) with the variable set; an
//! operator's own value always wins, and the second start finds every variable set
//! and goes on. That keeps the tuning in mimalloc's documented, stable names rather
//! than in positions of its option enum, and needs no code before `main`.

use std::ffi::OsString;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's options as Crossbar sets them (see the module docs for why): commit
/// memory as it is used, give freed pages back at once.
pub const TUNING: [(&str, &str); 3] = [
    ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
    ("MIMALLOC_PURGE_DELAY", "0"),
    ("MIMALLOC_PAGE_COMMIT_ON_DEMAND", "1"),
];

/// The tuning variables the environment lacks, with Crossbar's values.
pub fn missing(
    environment: impl Fn(&str) -> Option<OsString>,
) -> Vec<(&'static str, &'static str)> {
    TUNING
        .into_iter()
        .filter(|(name, _)| environment(name).is_none())
        .collect()
}

/// Starts this process again with the tuning variables it lacks, if any. Returns
/// only when nothing was missing or the new start failed (then the process goes on
/// with mimalloc's defaults, which work, only with more memory).
#[cfg(unix)]
pub fn ensure_tuned() {
    use std::os::unix::process::CommandExt;

    let missing = missing(|name| std::env::var_os(name));
    if missing.is_empty() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let error = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .envs(missing)
        .exec();
    eprintln!(
        "crossbar: warning: cannot restart with the allocator's settings ({error}); going on without them"
    );
}

#[cfg(not(unix))]
pub fn ensure_tuned() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_variables_an_operator_did_not_set_are_added() {
        let all = missing(|_| None);
        assert_eq!(all, TUNING);
        let operator_set_purge =
            missing(|name| (name == "MIMALLOC_PURGE_DELAY").then(|| OsString::from("250")));
        assert_eq!(
            operator_set_purge,
            [
                ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
                ("MIMALLOC_PAGE_COMMIT_ON_DEMAND", "1")
            ]
        );
        assert!(missing(|_| Some(OsString::new())).is_empty());
    }
}
