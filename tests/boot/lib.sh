# Shared by the boot suite: booting a cached Debian root under systemd-nspawn on a fresh
# overlay, running commands in it, counting named checks, and cleaning everything up.
# Sourced by tests/boot/run; expects $repo and $work to be set, and $base (the cached root
# that prepare puts under each overlay) before the first prepare.

passed=0
failed=0
skipped=0
# The boot whose generator log is shown when a check fails.
current=
# Put before every check's name (`252: boot: ...`): the guest whose checks are running.
prefix=

say() { printf '%s\n' "$*"; }

# ok NAME [NOTE]
ok() {
    passed=$((passed + 1))
    if [[ -n ${2:-} ]]; then say "ok - ${prefix:+$prefix: }$1 # $2"; else say "ok - ${prefix:+$prefix: }$1"; fi
}

# not_ok NAME DETAILS: prints the details and the generator's kmsg lines of the boot.
not_ok() {
    failed=$((failed + 1))
    say "not ok - ${prefix:+$prefix: }$1"
    [[ -n ${2:-} ]] && printf '%s\n' "$2" | sed 's/^/    | /'
    if [[ -n $current && -s $work/$current/run/kmsg.log ]]; then
        # The latest run of the generator (a reload runs it again) is the one that matters.
        local last
        last=$(grep -o 'portables-generator\[[0-9]*\]' "$work/$current/run/kmsg.log" | tail -n1)
        if [[ -n $last ]]; then
            say "    | $last on /dev/kmsg in boot '$current':"
            grep -F "$last" "$work/$current/run/kmsg.log" | sed 's/^/    |   /'
        fi
    fi
}

skip() {
    skipped=$((skipped + 1))
    say "skip - ${prefix:+$prefix: }$1 # $2"
}

# check NAME COMMAND...: ok if the command succeeds; its output is shown if not.
check() {
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then ok "$name"; else not_ok "$name" "$out"; fi
}

# eventually COMMAND...: retry for up to 5 s, for what the journal or PID 1 reports late.
eventually() {
    local i
    for ((i = 0; i < 50; i++)); do
        "$@" && return 0
        sleep 0.1
    done
    "$@"
}

summary() {
    say "$passed passed, $failed failed, $skipped skipped"
}

# Refuse to run where the suite can not work: counted as skipped, never as passed, and an
# error under CI, which must be able to run it.
refuse() {
    say "boot suite not run: $1"
    skipped=$((skipped + 1))
    summary
    if [[ ${CI:-} == true ]]; then exit 1; fi
    exit 0
}

loops_before=
record_loops() {
    loops_before=$(losetup -l -n -O NAME 2>/dev/null | sort)
}

# Loop devices made since record_loops for portable images: systemd autoclears them when
# the services stop; anything left is detached here.
new_loops() {
    comm -13 <(printf '%s\n' "$loops_before") <(losetup -l -n -O NAME 2>/dev/null | sort) | sed '/^$/d'
}

# prepare NAME: a fresh overlay on the cached base at $work/NAME/root.
prepare() {
    local name=$1 d=$work/$1
    mkdir -p "$d/upper" "$d/work" "$d/root" "$d/run"
    mount -t overlay overlay -o "lowerdir=$base,upperdir=$d/upper,workdir=$d/work" "$d/root"
    echo "$d/root" >>"$work/mounts"
}

# install_generator NAME: the release binary and this project's profiles, as packaged.
install_generator() {
    local r=$work/$1/root
    install -Dm755 "$generator" "$r/usr/lib/systemd/system-generators/portables-generator"
    mkdir -p "$r/usr/lib/portables-generator/profile"
    cp -r "$repo/profiles/." "$r/usr/lib/portables-generator/profile/"
    ln -sf /usr/lib/systemd/system-generators/portables-generator "$r/usr/bin/portables-generator"
    mkdir -p "$r/usr/lib/systemd/system"
    cp "$repo"/generator/*.service "$repo"/generator/*.path "$r/usr/lib/systemd/system/" 2>/dev/null || true
}

# boot NAME: boot the root of NAME; sets $guest to its PID 1 and waits until start-up is done.
boot() {
    local name=$1 d=$work/$1 i state
    current=$name
    mkfifo "$d/run/kmsg.fifo"
    : >"$d/run/console.log"
    # A FIFO keeps every line the guest writes to /dev/kmsg (a plain file keeps only the last).
    cat <>"$d/run/kmsg.fifo" >"$d/run/kmsg.log" &
    echo $! >"$d/run/cat.pid"
    echo $! >>"$work/pids"
    SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn -D "$d/root" -b -M "pt-$name" \
        --register=no --keep-unit --private-network --bind=/dev \
        --bind="$d/run/console.log:/dev/console" --bind="$d/run/kmsg.fifo:/dev/kmsg" \
        --console=pipe </dev/null >"$d/run/nspawn.log" 2>&1 &
    echo $! >"$d/run/nspawn.pid"
    echo $! >>"$work/pids"
    echo "$name" >>"$work/boots"
    guest=
    # nspawn briefly has a helper child too: the guest is the child that runs systemd.
    for ((i = 0; i < 100; i++)); do
        guest=$(pgrep -x systemd -P "$(cat "$d/run/nspawn.pid")" | head -n1) && [[ -n $guest ]] && break
        sleep 0.1
    done
    if [[ -z $guest ]]; then
        not_ok "boot '$name': systemd-nspawn started" "$(tail -n 20 "$d/run/nspawn.log")"
        return 1
    fi
    # is-system-running needs the bus; give PID 1 a moment to set it up.
    for ((i = 0; i < 100; i++)); do
        state=$(g systemctl is-system-running --wait 2>/dev/null) && break
        [[ $state == degraded || $state == running ]] && break
        sleep 0.1
    done
    echo "$state" >"$d/run/state"
    if ! kill -0 "$guest" 2>/dev/null; then
        not_ok "boot '$name': the guest is up" "$(tail -n 30 "$d/run/nspawn.log")"
        return 1
    fi
}

# g COMMAND...: run in the current guest, all its namespaces.
g() {
    timeout 60 nsenter -t "$guest" -a "$@"
}

# stop NAME: power the guest off cleanly, then take its overlay down.
stop() {
    local name=$1 d=$work/$1 pid i
    pid=$(cat "$d/run/nspawn.pid" 2>/dev/null) || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for ((i = 0; i < 150; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -f "$d/run/nspawn.pid"
    if [[ -f $d/run/cat.pid ]]; then
        kill "$(cat "$d/run/cat.pid")" 2>/dev/null
        rm -f "$d/run/cat.pid"
    fi
    mountpoint -q "$d/root" && umount "$d/root"
    return 0
}

# left_behind: every process the suite started that still runs (by the PIDs it recorded), and
# any process whose root or working directory is in the work directory (a guest's).
left_behind() {
    local pid p
    if [[ -f $work/pids ]]; then
        while read -r pid; do
            kill -0 "$pid" 2>/dev/null && say "$pid $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"
        done <"$work/pids"
    fi
    for p in /proc/[0-9]*; do
        case "$(readlink "$p/root" 2>/dev/null) $(readlink "$p/cwd" 2>/dev/null)" in
            *"$work"*) say "${p#/proc/} $(tr '\0' ' ' <"$p/cmdline" 2>/dev/null)" ;;
        esac
    done
    return 0
}

# Everything the suite started, whatever happened.
cleanup() {
    local name loop
    [[ -d $work ]] || return 0
    if [[ -f $work/boots ]]; then
        while read -r name; do stop "$name"; done <"$work/boots"
    fi
    if [[ -f $work/mounts ]]; then
        while read -r m; do mountpoint -q "$m" && umount -l "$m"; done <"$work/mounts"
    fi
    for loop in $(new_loops); do
        case $(losetup -l -n -O BACK-FILE "$loop" 2>/dev/null) in
            */portables/* | "$work"*) losetup -d "$loop" 2>/dev/null ;;
        esac
    done
    [[ ${KEEP_WORK:-} == 1 ]] || rm -rf "$work"
}

# write_tree DIR NAME VERSION: an image tree with a static busybox, an os-release naming
# the image and its version, the mount points a read-only image needs, and no units yet.
write_tree() {
    local dir=$1 name=$2 version=$3
    mkdir -p "$dir/usr/lib/systemd/system" "$dir/etc"
    cat >"$dir/usr/lib/os-release" <<EOF
ID=portabletest
VERSION_ID=1
IMAGE_ID=$name
IMAGE_VERSION=$version
PRETTY_NAME="Boot suite image $name $version"
EOF
    printf '%s\n' proc sys dev run tmp var/tmp >"$dir/.mkdirs"
    printf '%s\n' sh sleep echo cat id grep cut nc touch ls test >"$dir/.busybox"
    : >"$dir/etc/machine-id"
    : >"$dir/etc/resolv.conf"
}

# add_service DIR UNIT MESSAGE: a service that logs MESSAGE and stays up, enabled for
# multi-user.target.
add_service() {
    cat >"$1/usr/lib/systemd/system/$2" <<EOF
[Unit]
Description=Boot suite service $2

[Service]
ExecStart=/bin/sh -c 'echo "$3"; exec sleep infinity'

[Install]
WantedBy=multi-user.target
EOF
}
