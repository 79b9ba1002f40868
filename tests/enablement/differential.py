#!/usr/bin/env python3
"""Enablement compared with systemctl's own: for each unit file, the [Install] links the
generator makes for it (inside a directory image) against those `systemctl --root=DIR
enable` makes (the unit in DIR/usr/lib/systemd/system), per class of [Install] section.

usage: differential.py --generator BIN --version N --systemctl CMD [--show K] UNIT_FILE...

CMD is the systemctl to run, as words (a loader and its library path for a guest root's
own). Prints agree/differ per class, then up to K differences with both sides.

tests/enablement/run runs it over every corpus for systemd 252 and 257. `cases/` holds one
unit per difference issue 13 listed (c01 to c11), UpheldBy= (c12), and six more (c13 to c18).
With --random N it makes N units with seeded random [Install] sections; with --corpus each
file given is used as four units (a service, a socket, a timer, a template).
"""

import argparse
import collections
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

PORTABLE_TYPES = ("service", "socket", "target", "timer", "path")


def install_section(text):
    """The [Install] assignments, continuation lines joined (for classing only)."""
    out, section, pending = [], None, ""
    for raw in text.splitlines():
        line = pending + raw
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        s = line.strip()
        if not s or s[0] in "#;":
            continue
        if s.startswith("[") and s.endswith("]"):
            section = s[1:-1]
            continue
        if section == "Install" and "=" in s:
            k, v = s.split("=", 1)
            out.append((k.strip(), v.strip()))
    return out


def classes(name, text):
    """The classes of a unit: what its name and [Install] section hold."""
    found = set()
    stem = name.rsplit(".", 1)[0]
    if stem.endswith("@"):
        found.add("template")
    elif "@" in stem:
        found.add("instance")
    keys = install_section(text)
    if not keys:
        found.add("no [Install]")
    for k, v in keys:
        if k in ("WantedBy", "RequiredBy", "UpheldBy"):
            found.add(k)
            if re.search(r"@\.?\w*\.", v + " ") or "@." in v:
                found.add("template target")
        elif k in ("Alias", "Also", "DefaultInstance"):
            found.add(k)
        else:
            found.add("other key")
        if "%" in v:
            found.add("specifier")
        if '"' in v or "'" in v:
            found.add("quote")
        if "/" in v:
            found.add("slash")
    return found or {"plain"}


def links_below(top):
    """(relative path of each link, basename of its target), sorted."""
    out = []
    for dirpath, _dirs, files in os.walk(top):
        for f in files + _dirs:
            p = os.path.join(dirpath, f)
            if os.path.islink(p):
                out.append((os.path.relpath(p, top), os.path.basename(os.readlink(p))))
    return sorted(out)


def systemctl_links(cmd, name, text, work):
    root = os.path.join(work, "sc")
    shutil.rmtree(root, ignore_errors=True)
    unit_dir = os.path.join(root, "usr/lib/systemd/system")
    os.makedirs(unit_dir)
    os.makedirs(os.path.join(root, "etc/systemd/system"))
    with open(os.path.join(unit_dir, name), "w", errors="surrogateescape") as f:
        f.write(text)
    r = subprocess.run(
        cmd + ["--root=" + root, "--no-reload", "enable", name],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=30,
    )
    links = links_below(os.path.join(root, "etc/systemd/system"))
    return r.returncode, links, (r.stdout + r.stderr).strip()


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def generator_links(binary, version, name, text, work):
    root = os.path.join(work, "gen")
    shutil.rmtree(root, ignore_errors=True)
    # The profiles of this tree, as an installed generator has them.
    shutil.copytree(os.path.join(REPO, "profiles"), os.path.join(root, "usr/lib/portables-generator/profile"))
    image = os.path.join(root, "var/lib/portables/img")
    os.makedirs(os.path.join(image, "usr/lib/systemd/system"))
    os.makedirs(os.path.join(image, "etc"))
    with open(os.path.join(image, "etc/os-release"), "w") as f:
        f.write("ID=differential\n")
    with open(os.path.join(image, "usr/lib/systemd/system", name), "w", errors="surrogateescape") as f:
        f.write(text)
    # A timer, socket or path unit is attached only with the unit it starts: plain ones of
    # the names it may start beside it (its own name as a service, as a template service,
    # and what Service= or Unit= names), with no [Install], so no links of their own.
    stem, kind = name.rsplit(".", 1)
    started = set()
    if kind in ("socket", "timer", "path"):
        started = {stem + ".service", stem.rstrip("@") + "@.service"}
        started |= set(re.findall(r"^\s*(?:Service|Unit)\s*=\s*(\S+)", text, re.M))
        started = {u for u in started if "/" not in u and u != name}
    for unit in sorted(started):
        with open(os.path.join(image, "usr/lib/systemd/system", unit), "w") as f:
            f.write("[Service]\nExecStart=/bin/true\n")
    prefixes = {n.rsplit(".", 1)[0] for n in started | {name}}
    os.makedirs(os.path.join(root, "etc/portables.d"))
    with open(os.path.join(root, "etc/portables.d/img.conf"), "w") as f:
        f.write("[Portable]\nMatch=%s\n" % " ".join(sorted(prefixes)))
    outs = [os.path.join(work, "out", d) for d in ("n", "e", "l")]
    for o in outs:
        shutil.rmtree(o, ignore_errors=True)
        os.makedirs(o)
    env = dict(os.environ, SYSTEMD_LOG_TARGET="console")
    r = subprocess.run(
        [binary, "--root", root, "--systemd-version", str(version)] + outs,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=30,
        env=env,
    )
    links = [
        (p, t)
        for p, t in links_below(outs[0])
        # The unit's own drop-ins and the generator's own units are not [Install] links.
        if not p.split("/")[0].endswith(".d") and not t.startswith("portables-reattach")
    ]
    return r.returncode, links, r.stderr.strip()


def random_units(count, seed, out_dir):
    """`count` unit files with seeded random [Install] sections, written to `out_dir`: the
    kinds of name and of entry systemctl treats apart, and the syntax around them."""
    rnd = random.Random(seed)
    kinds = ("service", "socket", "timer", "target", "path")
    words = ("multi-user", "sockets", "timers", "container@", "getty@tty1", "default",
             "graphical", "x@y", "a-b-c", "%p", "%N", "%i", "%j", "%n", "%H", "%m", "%o",
             "%u", "%U", "%a", "%Z", "%%", "%", "%-", "foo/bar", "", "\\", "..", "@")
    suffixes = (".target", ".service", ".socket", ".timer", ".path", ".mount", "", ".bogus")

    def name_word():
        if rnd.random() < 0.75:
            # Mostly names a unit could have, or that specifiers make one.
            return rnd.choice(("multi-user", "sockets", "timers", "container@", "getty@tty1",
                               "x@y", "a-b-c", "%p", "%N", "%p-%i", "%j", "x@%i", "%H",
                               "%m", "%o", "%u", "%n-x")) + rnd.choice(
                (".target", ".target", ".target", ".service", ".socket", ".mount"))
        w = "".join(rnd.choice(words) for _ in range(rnd.randint(1, 2)))
        return w + rnd.choice(suffixes)

    def quoted(w):
        r = rnd.random()
        if r < 0.05:
            return '"' + w
        if r < 0.15:
            return '"%s"' % w
        if r < 0.2:
            return "'%s'" % w
        return w

    paths = []
    for i in range(count):
        kind = rnd.choice(kinds)
        shape = rnd.random()
        stem = "r%04d" % i + rnd.choice(("", "-x", "-a-b"))
        if shape < 0.3:
            name = "%s@.%s" % (stem, kind)
        elif shape < 0.4:
            name = "%s@%s.%s" % (stem, rnd.choice(("one", "a-b", "x:y")), kind)
        else:
            name = "%s.%s" % (stem, kind)
        lines = ["[Unit]", "Description=random %d" % i]
        if kind == "service":
            lines += ["[Service]", "ExecStart=/bin/true"]
        lines.append(rnd.choice(("[Install]", "[Install]", "[Install]", "[install]", "")))
        for _ in range(rnd.randint(0, 6)):
            key = rnd.choice(("WantedBy", "WantedBy", "RequiredBy", "UpheldBy", "Alias",
                              "Alias", "Also", "DefaultInstance", "DefaultInstance",
                              "Bogus", "wantedby"))
            if key == "DefaultInstance":
                value = rnd.choice(("one", "%p-x", "%H", "", "-bad/", "a b", "%i", "%m",
                                    "two", "x@y"))
            elif key == "Alias":
                pre = rnd.choice((stem, "other", "r%04d" % rnd.randrange(count)))
                tail = rnd.choice(("", "@", "@x", "@%i", "@%p"))
                value = rnd.choice((
                    "%s%s.%s" % (pre, tail, kind),
                    "%s%s.%s" % (pre, tail, rnd.choice(kinds)),
                    "multi-user.target.wants/%n",
                    "x@.target.wants/%s" % name,
                    "%n", name, name_word(),
                ))
            else:
                value = " ".join(quoted(name_word()) for _ in range(rnd.randint(0, 3)))
            if rnd.random() < 0.1 and " " in value:
                value = value.replace(" ", " \\\n  ", 1)
            lines.append("%s=%s" % (key, value))
        if rnd.random() < 0.05:
            lines.append("NoEquals")
        path = os.path.join(out_dir, name)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        paths.append(path)
    return paths


def corpus_variants(paths, out_dir):
    """Each file of systemd's fuzz corpus as four units: a service, a socket, a timer and a
    template service, named after it."""
    out = []
    for i, path in enumerate(paths):
        with open(path, "rb") as f:
            data = f.read()
        for name in ("c%03d.service" % i, "c%03d.socket" % i, "c%03d.timer" % i,
                     "c%03d@.service" % i):
            p = os.path.join(out_dir, name)
            with open(p, "wb") as f:
                f.write(data)
            out.append(p)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--generator", required=True)
    ap.add_argument("--version", type=int, required=True)
    ap.add_argument("--systemctl", required=True)
    ap.add_argument("--show", type=int, default=10)
    ap.add_argument("--label", default="")
    ap.add_argument("--random", type=int, default=0, help="this many random units too")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--corpus", action="store_true", help="the files are a corpus: four units each")
    ap.add_argument("--allow", type=int, default=0, help="differences tolerated (exit 0)")
    ap.add_argument("units", nargs="*")
    a = ap.parse_args()
    cmd = shlex.split(a.systemctl)
    agree, differ = collections.Counter(), collections.Counter()
    shown = []
    total = skipped = linked = 0
    with tempfile.TemporaryDirectory() as work:
        units = list(a.units)
        gen_dir = os.path.join(work, "units")
        os.makedirs(gen_dir)
        if a.corpus:
            units = corpus_variants(units, gen_dir)
        if a.random:
            units += random_units(a.random, a.seed, gen_dir)
        for path in units:
            name = os.path.basename(path)
            if name.rsplit(".", 1)[-1] not in PORTABLE_TYPES:
                skipped += 1
                continue
            with open(path, errors="surrogateescape") as f:
                text = f.read()
            total += 1
            _, sc, sc_out = systemctl_links(cmd, name, text, work)
            _, gen, gen_out = generator_links(a.generator, a.version, name, text, work)
            same = sc == gen
            linked += bool(sc)
            (agree if same else differ)["(all)"] += 1
            for c in classes(name, text):
                (agree if same else differ)[c] += 1
            if not same and len(shown) < a.show:
                shown.append((path, text, sc, sc_out, gen, gen_out))
    print("## %s: %d units, %d of them linked by systemctl (%d of other types left out)" % (
        a.label, total, linked, skipped))
    print("| class | agree | differ |")
    print("|---|---:|---:|")
    for c in sorted(set(agree) | set(differ)):
        print("| %s | %d | %d |" % (c, agree[c], differ[c]))
    for path, text, sc, sc_out, gen, gen_out in shown:
        print("\n### %s\n%s\nsystemctl: %s\n  %s\ngenerator: %s\n  %s" % (
            os.path.basename(path), text[:600], sc, sc_out[:300], gen, gen_out[:300]))
    return 0 if differ["(all)"] <= a.allow else 1


if __name__ == "__main__":
    sys.exit(main())
