//! `mailmover completions SHELL`: the scripts, run in their shells, offer the store kinds
//! (`mbox:`, `maildir:`, `cpanel:`) for SRC, DST and STORE, and paths after them.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// A directory to complete in: `Mail/` and `mbox.txt`; the bash script written beside them.
fn setup(env: &TestEnv, shell: &str) -> String {
    std::fs::create_dir_all(env.path("work/Mail")).unwrap();
    env.write("work/mbox.txt", b"");
    let r = env.run(["completions", shell]);
    r.expect_code(0);
    let script = env.write(&format!("script.{shell}"), r.stdout.as_bytes());
    script.display().to_string()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let (o, e) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{:?}: {}\n{o}\n{e}", out.status, e);
    o.into_owned()
}

/// Bash, as it calls a completion function: COMP_LINE and COMP_POINT, the words split (at `:`
/// too, as bash's default COMP_WORDBREAKS does), the function named by `complete -p`.
#[test]
fn bash_offers_the_kinds_then_paths() {
    let env = TestEnv::new();
    let script = setup(&env, "bash");
    let harness = format!(
        r#"source {script}
spec=$(complete -p mailmover); fn=${{spec##*-F }}; fn=${{fn%% *}}
echo "complete: $spec"
t() {{
    COMP_LINE=$1; COMP_POINT=${{#1}}
    local split=${{1//:/ : }}
    read -ra COMP_WORDS <<< "$split"
    [[ $1 == *[\ :] ]] && COMP_WORDS+=("")
    COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
    COMPREPLY=()
    "$fn" mailmover "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
    echo "[$1] ${{COMPREPLY[*]}}"
}}
t "mailmover sync "
t "mailmover sync ma"
t "mailmover verify a m"
t "mailmover inspect mbox:Ma"
t "mailmover sync maildir:"
t "mailmover sync --log-file "
t "mailmover sync --dry"
COMP_WORDBREAKS=" "
t "mailmover sync mbox:Ma"
"#
    );
    let out = run(Command::new("bash").args(["--norc", "--noprofile", "-c", &harness]).current_dir(env.path("work")));
    let line = |input: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("[{input}] ")).or_else(|| (l == format!("[{input}]")).then_some("")))
            .unwrap_or_else(|| panic!("no line for {input:?} in:\n{out}"))
            .split(' ')
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
    };
    assert!(out.contains("complete: complete ") && out.contains(" mailmover\n"), "{out}");
    let first = line("mailmover sync ");
    for w in ["mbox:", "maildir:", "cpanel:", "Mail/", "mbox.txt"] {
        assert!(first.contains(&w), "{w} not offered: {first:?}");
    }
    assert_eq!(line("mailmover sync ma"), ["maildir:"]);
    assert_eq!(line("mailmover verify a m"), ["mbox:", "maildir:", "mbox.txt"], "DST too");
    // Bash replaces what follows the ':' it split the word at.
    assert_eq!(line("mailmover inspect mbox:Ma"), ["Mail/"]);
    let after = line("mailmover sync maildir:");
    assert!(after.contains(&"Mail/") && after.contains(&"mbox.txt") && !after.contains(&"mbox:"), "{after:?}");
    let log = line("mailmover sync --log-file ");
    assert!(log.contains(&"Mail") && !log.contains(&"mbox:"), "an option's value is not a store: {log:?}");
    assert_eq!(line("mailmover sync --dry"), ["--dry-run"]);
    assert_eq!(line("mailmover sync mbox:Ma"), ["mbox:Mail/"], "without ':' in COMP_WORDBREAKS the whole word");
}

#[test]
fn fish_offers_the_kinds_then_paths() {
    if !require(Need::Fish) {
        return;
    }
    let env = TestEnv::new();
    let script = setup(&env, "fish");
    let complete = |line: &str| {
        let cmd = format!("source {script}; complete -C '{line}'");
        let out = run(Command::new("fish").args(["--no-config", "-c", &cmd]).current_dir(env.path("work")));
        out.lines().map(|l| l.split('\t').next().unwrap_or("").to_string()).collect::<Vec<_>>()
    };
    let first = complete("mailmover sync ");
    for w in ["mbox:", "maildir:", "cpanel:", "Mail/", "mbox.txt"] {
        assert!(first.iter().any(|x| x == w), "{w} not offered: {first:?}");
    }
    assert_eq!(complete("mailmover inspect mbox:Ma"), ["mbox:Mail/"]);
    assert!(!complete("mailmover sync --log-file ").iter().any(|x| x == "mbox:"), "an option's value is not a store");
}

/// Zsh completes in its line editor only: an interactive zsh on a pseudo-terminal (zpty),
/// TAB pressed, the listing read back.
#[test]
fn zsh_offers_the_kinds_then_paths() {
    if !require(Need::Zsh) {
        return;
    }
    let env = TestEnv::new();
    let script = setup(&env, "zsh");
    let fpath = env.path("fpath");
    std::fs::create_dir_all(&fpath).unwrap();
    std::fs::copy(&script, fpath.join("_mailmover")).unwrap();
    let work = env.path("work");
    let harness = format!(
        r#"zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z 'PS1="> "; fpath=({fpath} $fpath); autoload -Uz compinit; compinit -u -D; mailmover() {{}}; cd {work}'
zpty -w -n z $'mailmover sync m\t'
zpty -r z out '*maildir:*mbox:*' && print -r -- "kinds: $out"
zpty -w -n z $'\x15mailmover inspect mbox:Ma\t'
zpty -r z out '*mbox:Mail*' && print -r -- "path: $out"
zpty -d z
"#,
        fpath = fpath.display(),
        work = Path::new(&work).display()
    );
    let out = run(Command::new("timeout").args(["30", "zsh", "-f", "-c", &harness]));
    // The listing of the kinds, then the path completed after one (zsh draws its `/` bold).
    assert!(out.contains("kinds: ") && out.contains("path: "), "{out}");
}
