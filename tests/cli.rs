//! The binaries' argument handling and exit codes.
mod common;

use std::process::Command;

#[test]
fn unknown_subcommand_exits_125_like_docker() {
    let out = Command::new(common::bin("box"))
        .arg("bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
}

#[test]
fn boxrun_takes_dash_h_as_hostname_like_docker() {
    let out = Command::new(common::bin("boxrun"))
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("-h, --hostname"), "{help}");
}
