//! What `apply` does, decided from what was attached, what is attached now, and what systemd
//! says about each unit: a pure function of those, so that every case is a unit test.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use super::snapshot::{Snapshot, Unit};

/// A unit's `ActiveState`, as far as `apply` cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// `active`, `activating`, `reloading` or `refreshing`: running or about to.
    Running,
    /// `deactivating`: on its way down already.
    Stopping,
    /// `inactive` (or `maintenance`, while being cleaned).
    Inactive,
    /// `failed`: its last start or run failed.
    Failed,
}

impl Activity {
    /// The `ActiveState` property's value, read as one of these.
    pub fn from_active_state(state: &str) -> Activity {
        match state {
            "active" | "activating" | "reloading" | "refreshing" => Activity::Running,
            "deactivating" => Activity::Stopping,
            "failed" => Activity::Failed,
            _ => Activity::Inactive,
        }
    }

    fn up(self) -> bool {
        matches!(self, Activity::Running | Activity::Stopping)
    }
}

/// What systemd says about one unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    /// Its `ActiveState`.
    pub activity: Activity,
    /// Whether its `LoadState` is `loaded` (a unit whose file is gone after a reload keeps
    /// running as `not-found`).
    pub loaded: bool,
    /// The units that trigger it (`TriggeredBy=`: its socket, timer or path unit).
    pub triggered_by: Vec<String>,
}

impl Live {
    /// What systemd says of a unit it does not know.
    pub fn unknown() -> Live {
        Live {
            activity: Activity::Inactive,
            loaded: false,
            triggered_by: Vec::new(),
        }
    }
}

/// What the decisions ask of the system, as functions so that tests can stand in for it.
pub struct World<'a> {
    /// What systemd says about this unit.
    pub live: &'a dyn Fn(&str) -> Live,
    /// Whether this image is still there.
    pub exists: &'a dyn Fn(&Path) -> bool,
    /// The loaded instances of this template (`app@.service` → `app@1.service`, ...).
    pub instances: &'a dyn Fn(&str) -> Vec<String>,
}

/// What to do to a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verb {
    /// Stop it (`StopUnit`).
    Stop,
    /// Remove its state, cache, logs and runtime directories (`CleanUnit`).
    Clean,
    /// Restart it (`RestartUnit`).
    Restart,
    /// Start it (`StartUnit`).
    Start,
}

/// Whether an action comes before systemd reloads the generator's output or after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum When {
    /// While the old unit is still loaded: stopping a unit that is going away runs its own
    /// `ExecStop=`, and cleaning needs its settings.
    BeforeReload,
    /// Once the new units are loaded.
    AfterReload,
}

/// One action and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// Before or after the reload.
    pub when: When,
    /// What to do.
    pub verb: Verb,
    /// To which unit.
    pub unit: String,
    /// Why, as said in parentheses after it.
    pub why: String,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.verb {
            Verb::Stop => "stop",
            Verb::Clean => "clean",
            Verb::Restart => "restart",
            Verb::Start => "start",
        };
        write!(f, "{verb} {} ({})", self.unit, self.why)
    }
}

/// Everything to do so that the running system matches `after`, given what was attached
/// (`before`) and the world as it is. With `clean`, services whose image is gone also lose
/// their state, cache, logs and runtime directories.
pub fn decide(before: &Snapshot, after: &Snapshot, world: &World, clean: bool) -> Vec<Action> {
    let mut out = Vec::new();
    for (name, old) in before.iter().filter(|(n, _)| !after.contains_key(*n)) {
        removed(name, old, world, clean, &mut out);
    }
    let disabled = disabled(before, after, world);
    for (name, new) in after {
        // A template is never loaded as such: only its instances run.
        let live = if is_template(name) {
            Live::unknown()
        } else {
            (world.live)(name)
        };
        let act = |verb, why: String| Action {
            when: When::AfterReload,
            verb,
            unit: name.clone(),
            why,
        };
        if let Some(why) = disabled.get(name) {
            out.push(act(Verb::Stop, why.clone()));
            continue;
        }
        let old = before.get(name);
        let change = old.and_then(|old| changed(old, new, name));
        if live.activity == Activity::Running {
            if let Some(why) = change {
                out.push(act(Verb::Restart, why));
            }
            continue;
        }
        if !new.enabled() || is_template(name) || !wanted_now(new, world) {
            continue;
        }
        let image = new
            .image()
            .map_or_else(String::new, |p| format!(", image {}", p.display()));
        let why = match old {
            None if new.image().is_some() => format!("image {} added", shown(new.image())),
            None => "added".to_string(),
            Some(old) if !old.enabled() => format!("enabled now{image}"),
            Some(_) => match (change, live.activity) {
                (Some(why), _) => why,
                (None, Activity::Inactive) => format!("enabled, not running{image}"),
                // Failed, and nothing changed since: starting it again would fail again.
                (None, _) => continue,
            },
        };
        out.push(act(Verb::Start, why));
    }
    out.sort_by_key(|a| (a.when, a.verb));
    out
}

/// A unit gone from the plan: stopped while still loaded, with its template's instances, and
/// cleaned if asked.
fn removed(name: &str, old: &Unit, world: &World, clean: bool, out: &mut Vec<Action>) {
    let why = match old.image() {
        Some(image) if !(world.exists)(image) => {
            format!("image {} is gone", image.display())
        }
        Some(image) => format!("image {} is no longer attached", image.display()),
        None => "no longer attached".to_string(),
    };
    let mut units = vec![name.to_string()];
    if is_template(name) {
        units.extend((world.instances)(name));
    }
    for unit in units {
        let live = (world.live)(&unit);
        let act = |verb| Action {
            when: When::BeforeReload,
            verb,
            unit: unit.clone(),
            why: why.clone(),
        };
        if live.activity.up() {
            out.push(act(Verb::Stop));
        }
        // Cleaning needs the unit's settings: after a reload that dropped it they are gone.
        if clean && live.loaded && unit.ends_with(".service") && !is_template(&unit) {
            out.push(act(Verb::Clean));
        }
    }
}

/// Units enabled before and not now (`Enable=no`) that run: stopped, each with the reason.
/// A service that one of its triggers (socket, timer, path) still running and not stopped
/// here has started is left to that trigger.
fn disabled(
    before: &Snapshot,
    after: &Snapshot,
    world: &World,
) -> std::collections::BTreeMap<String, String> {
    let candidates: Vec<&String> = after
        .iter()
        .filter(|(name, new)| {
            !new.enabled()
                && before.get(*name).is_some_and(Unit::enabled)
                && (world.live)(name).activity == Activity::Running
        })
        .map(|(name, _)| name)
        .collect();
    let stopping: BTreeSet<&str> = candidates.iter().map(|n| n.as_str()).collect();
    candidates
        .into_iter()
        .filter(|name| {
            !(world.live)(name).triggered_by.iter().any(|t| {
                !stopping.contains(t.as_str()) && (world.live)(t).activity == Activity::Running
            })
        })
        .map(|name| (name.clone(), "no longer enabled".to_string()))
        .collect()
}

/// Why a unit that stays attached must restart, if it must: its image or an extension is
/// another path now, or another file or of another size at the same path, or its os-release
/// changed (known only from the record of the last `apply`, see [`Unit::stamp`]), or its unit
/// file or drop-ins changed. The images' times are no sign: systemd opens a `RootImage=`
/// writable when it can, and a mounted ext4 image has its times changed by the kernel while
/// its service runs.
fn changed(old: &Unit, new: &Unit, name: &str) -> Option<String> {
    if old.images != new.images {
        return Some(match (old.image(), new.image()) {
            (Some(o), Some(n)) if o != n => {
                format!("image now {} (was {})", n.display(), o.display())
            }
            _ => format!("extensions of image {} changed", shown(new.image())),
        });
    }
    // Sockets, timers and paths do not run from their image: only a service sees it change.
    if name.ends_with(".service")
        && let (Some(o), Some(n)) = (old.stamp, new.stamp)
        && o != n
    {
        return Some(format!("image {} changed", shown(new.image())));
    }
    (old.fingerprint != new.fingerprint).then(|| "its unit file or drop-ins changed".to_string())
}

/// Whether a unit linked into targets is wanted now: one of them is active or on its way.
fn wanted_now(unit: &Unit, world: &World) -> bool {
    unit.wanted_by
        .iter()
        .any(|t| (world.live)(t).activity == Activity::Running)
}

fn is_template(name: &str) -> bool {
    name.split_once('@')
        .is_some_and(|(_, rest)| rest.starts_with('.'))
}

fn shown(image: Option<&Path>) -> String {
    image.map_or_else(|| "?".to_string(), |p| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;

    fn unit(image: &str, fp: u64, wanted_by: &[&str]) -> Unit {
        Unit {
            images: vec![PathBuf::from(image)],
            fingerprint: fp,
            wanted_by: wanted_by.iter().map(ToString::to_string).collect(),
            stamp: None,
        }
    }

    fn snap(list: &[(&str, Unit)]) -> Snapshot {
        list.iter()
            .map(|(n, u)| (n.to_string(), u.clone()))
            .collect()
    }

    fn live(activity: Activity) -> Live {
        Live {
            activity,
            loaded: true,
            triggered_by: Vec::new(),
        }
    }

    /// The system: multi-user.target and sockets.target active; every other unit as given
    /// in `units` (else unknown); the images present.
    struct Sys {
        units: BTreeMap<String, Live>,
        images: BTreeSet<PathBuf>,
        instances: Vec<String>,
    }

    impl Sys {
        fn new(units: &[(&str, Live)], images: &[&str]) -> Sys {
            let mut all: BTreeMap<String, Live> = units
                .iter()
                .map(|(n, l)| (n.to_string(), l.clone()))
                .collect();
            for t in ["multi-user.target", "sockets.target"] {
                all.insert(t.into(), live(Activity::Running));
            }
            Sys {
                units: all,
                images: images.iter().map(PathBuf::from).collect(),
                instances: Vec::new(),
            }
        }

        fn decide(&self, before: &Snapshot, after: &Snapshot, clean: bool) -> Vec<String> {
            let live = |n: &str| self.units.get(n).cloned().unwrap_or_else(Live::unknown);
            let exists = |p: &Path| self.images.contains(p);
            let instances = |_: &str| self.instances.clone();
            let world = World {
                live: &live,
                exists: &exists,
                instances: &instances,
            };
            decide(before, after, &world, clean)
                .iter()
                .map(|a| {
                    let when = match a.when {
                        When::BeforeReload => "before",
                        When::AfterReload => "after",
                    };
                    format!("{when}: {a}")
                })
                .collect()
        }
    }

    const APP: &str = "/var/lib/portables/app.raw";
    const MU: &[&str] = &["multi-user.target"];

    #[test]
    fn an_image_added_is_started() {
        let sys = Sys::new(&[], &[APP]);
        let after = snap(&[("app.service", unit(APP, 1, MU))]);
        assert_eq!(
            sys.decide(&Snapshot::new(), &after, false),
            ["after: start app.service (image /var/lib/portables/app.raw added)"]
        );
    }

    #[test]
    fn an_image_added_but_not_enabled_is_only_loaded() {
        let sys = Sys::new(&[], &[APP]);
        let after = snap(&[("app.service", unit(APP, 1, &[]))]);
        assert!(sys.decide(&Snapshot::new(), &after, false).is_empty());
        // Nor is one whose target is not active (rescue mode, say).
        let after = snap(&[("app.service", unit(APP, 1, &["graphical.target"]))]);
        assert!(sys.decide(&Snapshot::new(), &after, false).is_empty());
    }

    #[test]
    fn an_image_removed_is_stopped_before_the_reload_and_cleaned_if_asked() {
        let sys = Sys::new(&[("app.service", live(Activity::Running))], &[]);
        let before = snap(&[("app.service", unit(APP, 1, MU))]);
        assert_eq!(
            sys.decide(&before, &Snapshot::new(), false),
            ["before: stop app.service (image /var/lib/portables/app.raw is gone)"]
        );
        assert_eq!(
            sys.decide(&before, &Snapshot::new(), true),
            [
                "before: stop app.service (image /var/lib/portables/app.raw is gone)",
                "before: clean app.service (image /var/lib/portables/app.raw is gone)"
            ]
        );
    }

    #[test]
    fn an_image_no_longer_declared_is_stopped_though_still_there() {
        let sys = Sys::new(&[("app.service", live(Activity::Running))], &[APP]);
        let before = snap(&[("app.service", unit(APP, 1, MU))]);
        assert_eq!(
            sys.decide(&before, &Snapshot::new(), false),
            ["before: stop app.service (image /var/lib/portables/app.raw is no longer attached)"]
        );
    }

    #[test]
    fn a_removed_template_takes_its_running_instances_down() {
        let mut sys = Sys::new(
            &[
                ("app@1.service", live(Activity::Running)),
                ("app@2.service", live(Activity::Inactive)),
                ("app.socket", live(Activity::Running)),
            ],
            &[],
        );
        sys.instances = vec!["app@1.service".into(), "app@2.service".into()];
        let before = snap(&[
            ("app@.service", unit(APP, 1, &[])),
            ("app.socket", unit(APP, 2, &["sockets.target"])),
        ]);
        assert_eq!(
            sys.decide(&before, &Snapshot::new(), false),
            [
                "before: stop app.socket (image /var/lib/portables/app.raw is gone)",
                "before: stop app@1.service (image /var/lib/portables/app.raw is gone)"
            ]
        );
    }

    fn stamped(stamp: Option<u64>) -> Snapshot {
        let mut u = unit(APP, 1, MU);
        u.stamp = stamp;
        snap(&[("app.service", u)])
    }

    #[test]
    fn an_image_replaced_in_place_restarts_its_running_service() {
        let sys = Sys::new(&[("app.service", live(Activity::Running))], &[APP]);
        assert_eq!(
            sys.decide(&stamped(Some(1)), &stamped(Some(2)), false),
            ["after: restart app.service (image /var/lib/portables/app.raw changed)"]
        );
        // The same file, size and os-release: written to by its own mount, not replaced.
        assert!(
            sys.decide(&stamped(Some(1)), &stamped(Some(1)), false)
                .is_empty()
        );
        // Without the record of an earlier apply nothing says what the image was.
        assert!(
            sys.decide(&stamped(None), &stamped(Some(2)), false)
                .is_empty()
        );
    }

    #[test]
    fn a_new_version_or_new_drop_ins_restart_it() {
        let v1 = "/var/lib/portables/app_1.raw";
        let v2 = "/var/lib/portables/app_2.raw";
        let sys = Sys::new(&[("app.service", live(Activity::Running))], &[v1, v2]);
        let before = snap(&[("app.service", unit(v1, 1, MU))]);
        let after = snap(&[("app.service", unit(v2, 2, MU))]);
        assert_eq!(
            sys.decide(&before, &after, false),
            [
                "after: restart app.service (image now /var/lib/portables/app_2.raw (was /var/lib/portables/app_1.raw))"
            ]
        );
        let after = snap(&[("app.service", unit(v1, 3, MU))]);
        assert_eq!(
            sys.decide(&before, &after, false),
            ["after: restart app.service (its unit file or drop-ins changed)"]
        );
    }

    #[test]
    fn a_unit_changed_while_stopped_is_started_if_enabled_and_not_restarted() {
        let sys = Sys::new(&[("app.service", live(Activity::Failed))], &[APP]);
        // Its image changed after it failed: worth another start.
        assert_eq!(
            sys.decide(&stamped(Some(1)), &stamped(Some(2)), false),
            ["after: start app.service (image /var/lib/portables/app.raw changed)"]
        );
        // Nothing changed since it failed: it would only fail again.
        assert!(
            sys.decide(&stamped(Some(1)), &stamped(Some(1)), false)
                .is_empty()
        );
    }

    #[test]
    fn enable_no_stops_what_was_enabled_and_enable_yes_starts_it() {
        let sys = Sys::new(&[("app.service", live(Activity::Running))], &[APP]);
        let on = snap(&[("app.service", unit(APP, 1, MU))]);
        let off = snap(&[("app.service", unit(APP, 2, &[]))]);
        assert_eq!(
            sys.decide(&on, &off, false),
            ["after: stop app.service (no longer enabled)"]
        );
        let sys = Sys::new(&[("app.service", live(Activity::Inactive))], &[APP]);
        assert_eq!(
            sys.decide(&off, &on, false),
            ["after: start app.service (enabled now, image /var/lib/portables/app.raw)"]
        );
    }

    #[test]
    fn a_service_its_socket_started_is_left_to_the_socket() {
        let mut svc = live(Activity::Running);
        svc.triggered_by = vec!["app.socket".into()];
        let sys = Sys::new(
            &[
                ("app.service", svc),
                ("app.socket", live(Activity::Running)),
            ],
            &[APP],
        );
        // The service was enabled too, and is not now; its socket still is, and stays.
        let before = snap(&[
            ("app.service", unit(APP, 1, MU)),
            ("app.socket", unit(APP, 2, &["sockets.target"])),
        ]);
        let after = snap(&[
            ("app.service", unit(APP, 1, &[])),
            ("app.socket", unit(APP, 2, &["sockets.target"])),
        ]);
        assert!(sys.decide(&before, &after, false).is_empty());
        // A service started by the socket that was never enabled itself is not touched.
        let before = snap(&[
            ("app.service", unit(APP, 1, &[])),
            ("app.socket", unit(APP, 2, &["sockets.target"])),
        ]);
        assert!(sys.decide(&before, &before, false).is_empty());
        // With Enable=no for the whole image both go: the socket and, since the socket
        // stops too, the service.
        let off = snap(&[
            ("app.service", unit(APP, 1, &[])),
            ("app.socket", unit(APP, 2, &[])),
        ]);
        let on = snap(&[
            ("app.service", unit(APP, 1, MU)),
            ("app.socket", unit(APP, 2, &["sockets.target"])),
        ]);
        assert_eq!(
            sys.decide(&on, &off, false),
            [
                "after: stop app.service (no longer enabled)",
                "after: stop app.socket (no longer enabled)"
            ]
        );
    }

    #[test]
    fn already_reloaded_by_hand_the_running_unit_is_still_stopped() {
        // The record still lists the unit; systemd, reloaded, no longer has its file.
        let mut gone = live(Activity::Running);
        gone.loaded = false;
        let sys = Sys::new(&[("app.service", gone)], &[]);
        let before = snap(&[("app.service", unit(APP, 1, MU))]);
        assert_eq!(
            sys.decide(&before, &Snapshot::new(), true),
            ["before: stop app.service (image /var/lib/portables/app.raw is gone)"],
            "stopped, and not cleaned: its settings went with the reload"
        );
        // An image added and reloaded by hand: the unit is loaded, not running, enabled.
        let sys = Sys::new(&[("app.service", live(Activity::Inactive))], &[APP]);
        let now = snap(&[("app.service", unit(APP, 1, MU))]);
        assert_eq!(
            sys.decide(&now, &now, false),
            ["after: start app.service (enabled, not running, image /var/lib/portables/app.raw)"]
        );
    }

    #[test]
    fn nothing_changed_nothing_done() {
        let sys = Sys::new(&[("app.service", live(Activity::Running))], &[APP]);
        let s = snap(&[("app.service", unit(APP, 1, MU))]);
        assert!(sys.decide(&s, &s, true).is_empty());
    }
}
