//! Unit tests of [`super`] (container state on disk).

use super::*;

fn state(id: &str, name: &str) -> State {
    State {
        id: id.into(),
        name: name.into(),
        image: "busybox".into(),
        image_digest: String::new(),
        image_id: String::new(),
        argv: vec!["true".into()],
        env: vec![],
        cwd: None,
        user: None,
        hostname: id[..12].into(),
        stop_signal: 15,
        stop_timeout: None,
        labels: Default::default(),
        caps: 0,
        no_new_privs: false,
        seccomp: Default::default(),
        network: crate::run::NetworkMode::None,
        ports: vec![],
        published: vec![],
        limits: Limits::default(),
        mounts: vec![],
        read_only: false,
        tty: false,
        detached: true,
        auto_remove: false,
        anonymous_volumes: vec![],
        status: Status::Running,
        created: now_rfc3339(),
        started_at: Some(now_rfc3339()),
        finished_at: None,
        exit_code: None,
        supervisor_pid: Some(i32::MAX - 1),
        supervisor_start: Some(1),
        monitor_pid: None,
        monitor_start: None,
        error: None,
        launch: None,
        restart: Default::default(),
        restart_count: 0,
        restarting: false,
    }
}

#[test]
fn resolve_by_id_prefix_and_name_and_names_are_unique() {
    let t = tempfile::tempdir().unwrap();
    let c = Containers::new(t.path());
    let a = "aa".repeat(32);
    let b = "ab".repeat(32);
    for (id, n) in [(&a, "one"), (&b, "two")] {
        c.reserve_name(n, id).unwrap();
        c.create(&state(id, n)).unwrap();
    }
    assert_eq!(c.resolve("one").unwrap(), a);
    assert_eq!(c.resolve("abab").unwrap(), b);
    assert!(matches!(c.resolve("a"), Err(StateError::Ambiguous(_, 2))));
    assert!(matches!(c.resolve("zz"), Err(StateError::NoSuch(_))));
    assert!(matches!(
        c.reserve_name("one", "x"),
        Err(StateError::NameInUse(_))
    ));
    assert!(c.reserve_name("bad/name", "x").is_err());
}

#[test]
fn a_dead_supervisor_is_detected_and_auto_remove_cleans_up() {
    let t = tempfile::tempdir().unwrap();
    let c = Containers::new(t.path());
    let a = "cd".repeat(32);
    c.reserve_name("dead", &a).unwrap();
    c.create(&state(&a, "dead")).unwrap();
    let st = c.refresh(&a).unwrap().unwrap();
    assert_eq!(st.status, Status::Exited);
    assert!(st.error.is_some());
    let b = "ef".repeat(32);
    let mut s = state(&b, "gone");
    s.auto_remove = true;
    c.reserve_name("gone", &b).unwrap();
    c.create(&s).unwrap();
    assert!(c.refresh(&b).unwrap().is_none());
    assert!(!c.dir(&b).exists());
    // The name is free again.
    c.reserve_name("gone", "other").unwrap();
}

#[test]
fn a_dead_supervisor_whose_monitor_lives_is_not_taken_for_a_lost_exit() {
    let t = tempfile::tempdir().unwrap();
    let c = Containers::new(t.path());
    let a = "9a".repeat(32);
    let mut s = state(&a, "draining");
    // The monitor (this test process) still drains the log and will record the exit.
    let me = std::process::id() as i32;
    s.monitor_pid = Some(me);
    s.monitor_start = process_start(me);
    c.reserve_name("draining", &a).unwrap();
    c.create(&s).unwrap();
    let st = c.refresh(&a).unwrap().unwrap();
    assert_eq!(st.status, Status::Running);
    assert_eq!(st.exit_code, None);
    assert!(!st.is_running(), "its supervisor is gone");
    // Once the monitor is gone too, the exit is lost.
    s.monitor_start = Some(1);
    c.save(&s).unwrap();
    let st = c.refresh(&a).unwrap().unwrap();
    assert_eq!((st.status, st.exit_code), (Status::Exited, Some(137)));
}

#[test]
fn a_state_from_before_start_and_restart_still_loads() {
    let mut v = serde_json::to_value(state(&"5e".repeat(32), "old")).unwrap();
    let m = v.as_object_mut().unwrap();
    for k in ["launch", "restart", "restart_count", "restarting"] {
        assert!(m.remove(k).is_some(), "{k}");
    }
    let st: State = serde_json::from_value(v).unwrap();
    assert!(st.launch.is_none());
    assert_eq!(st.restart, crate::container::restart::Policy::No);
    assert_eq!((st.restart_count, st.restarting), (0, false));
}

#[test]
fn the_launch_record_round_trips_through_the_state() {
    use crate::container::launch::Launch;
    use crate::run::MountSpec as Mount;
    use crate::run::spec::{Extras, Ulimit};
    let mut st = state(&"6f".repeat(32), "rec");
    st.restart = crate::container::restart::Policy::OnFailure { max: 3 };
    st.launch = Some(Launch {
        lowerdirs: vec!["/s/layers/ab".into()],
        hostname: Some("h".into()),
        mounts: vec![
            Mount::Bind {
                source: "/src".into(),
                target: "/dst".into(),
                read_only: true,
            },
            Mount::Tmpfs {
                target: "/run".into(),
                options: Some("size=1m".into()),
            },
        ],
        cap_add: vec!["NET_ADMIN".into()],
        cap_drop: vec![],
        init: true,
        userns_host: false,
        interactive: true,
        extras: Extras {
            ulimits: vec![Ulimit {
                name: "nofile".into(),
                resource: 7,
                soft: 10,
                hard: 20,
            }],
            ..Default::default()
        },
        kept_upper: true,
    });
    let back: State = serde_json::from_slice(&serde_json::to_vec(&st).unwrap()).unwrap();
    assert_eq!(back.restart, st.restart);
    assert_eq!(
        serde_json::to_value(&back.launch).unwrap(),
        serde_json::to_value(&st.launch).unwrap()
    );
}

#[test]
fn rename_moves_the_name_and_refuses_a_taken_one() {
    let t = tempfile::tempdir().unwrap();
    let c = Containers::new(t.path());
    let (a, b) = ("12".repeat(32), "34".repeat(32));
    for (id, n) in [(&a, "first"), (&b, "second")] {
        c.reserve_name(n, id).unwrap();
        c.create(&state(id, n)).unwrap();
    }
    assert!(matches!(
        c.rename(&a, "second"),
        Err(StateError::NameInUse(_))
    ));
    assert!(matches!(c.rename(&a, "bad/x"), Err(StateError::BadName(_))));
    c.rename(&a, "renamed").unwrap();
    assert_eq!(c.resolve("renamed").unwrap(), a);
    assert_eq!(c.load(&a).unwrap().name, "renamed");
    assert!(c.resolve("first").is_err());
    c.reserve_name("first", "other").unwrap();
}

#[test]
fn a_foreground_rm_container_lives_in_the_run_dir_and_is_found_and_removed() {
    let t = tempfile::tempdir().unwrap();
    let c = Containers::new(t.path());
    let id = "cd".repeat(32);
    let mut s = state(&id, "fg");
    s.detached = false;
    s.auto_remove = true;
    c.reserve_name_for("fg", &id, true).unwrap();
    c.create(&s).unwrap();
    let Some(run) = crate::store::rundir::run_dir(t.path()) else {
        // No tmpfs at /dev/shm: the state stays in the store.
        assert!(t.path().join(&id).join("state.json").is_file());
        return;
    };
    assert!(run.join(&id).join("state.json").is_file());
    assert!(!t.path().join(&id).exists(), "nothing of it in the store");
    assert!(run.join("names/fg").is_symlink());
    assert!(
        !t.path().join("names/fg").exists(),
        "its name is not on disk either"
    );
    // One namespace of names across both places: a store container cannot take it, nor can
    // another foreground --rm one; its own rename moves it within the run directory.
    let other = Containers::new(t.path());
    assert!(matches!(
        other.reserve_name("fg", "x"),
        Err(StateError::NameInUse(_))
    ));
    assert!(
        !t.path().join("names/fg").exists(),
        "the losing link is taken back"
    );
    assert!(matches!(
        other.reserve_name_for("fg", "y", true),
        Err(StateError::NameInUse(_))
    ));
    other.rename(&id, "fg2").unwrap();
    assert!(run.join("names/fg2").is_symlink() && !run.join("names/fg").exists());
    other.rename(&id, "fg").unwrap();
    // And the other way round: a store container's name is refused to a --rm one.
    c.reserve_name("kept", &"cf".repeat(32)).unwrap();
    c.create(&state(&"cf".repeat(32), "kept")).unwrap();
    assert!(matches!(
        c.reserve_name_for("kept", "w", true),
        Err(StateError::NameInUse(_))
    ));
    assert!(!run.join("names/kept").exists());
    // Another user of the store (a new handle, as `box ps` makes) finds it.
    let other = Containers::new(t.path());
    assert_eq!(other.ids(), vec![id.clone(), "cf".repeat(32)]);
    assert_eq!(other.resolve("fg").unwrap(), id);
    assert_eq!(other.resolve(&id[..6]).unwrap(), id);
    assert_eq!(other.load(&id).unwrap().name, "fg");
    other.remove(&s, None).unwrap();
    assert!(!run.join(&id).exists());
    assert!(!run.join("names/fg").exists());
    assert_eq!(other.ids(), vec!["cf".repeat(32)]);
    // A detached or created --rm container stays in the store.
    let id2 = "ce".repeat(32);
    let mut d = state(&id2, "bg");
    d.auto_remove = true;
    c.create(&d).unwrap();
    assert!(t.path().join(&id2).join("state.json").is_file());
    std::fs::remove_dir_all(&run).unwrap();
}
