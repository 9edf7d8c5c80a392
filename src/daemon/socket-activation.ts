// Sockets handed over by systemd (sysgenidd.socket, sysgenidd-control.socket) or any launcher that
// follows sd_listen_fds(3): LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES. The daemon then listens on these
// descriptors instead of binding: they exist from early boot, keep their mode and group as the socket
// units set them, and outlive every restart, so a client connecting meanwhile waits instead of failing.

/** The first descriptor passed (SD_LISTEN_FDS_START). */
const FIRST_FD = 3;

export interface ActivatedSockets {
  readonly watch: number | undefined;
  readonly control: number | undefined;
  /** Descriptors whose name is neither, with their names (left alone, reported). */
  readonly unknown: ReadonlyArray<{ fd: number; name: string }>;
}

/**
 * The passed sockets, or undefined when none were passed to this process. Names come from
 * LISTEN_FDNAMES ("watch", "control"); without names, two descriptors are watch then control, as
 * the ListenStream= lines would be listed. The variables are removed, as sd_listen_fds(1) does, so
 * that no child (a hook) takes them for its own.
 */
export function activatedSockets(
  env: NodeJS.ProcessEnv = process.env,
  pid: number = process.pid,
): ActivatedSockets | undefined {
  const count = env.LISTEN_FDS;
  const forPid = env.LISTEN_PID;
  const names = env.LISTEN_FDNAMES;
  delete env.LISTEN_FDS;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDNAMES;
  if (count === undefined || !/^[0-9]+$/.test(count) || Number(count) === 0) return undefined;
  if (forPid !== undefined && forPid !== String(pid)) return undefined;
  const n = Number(count);
  const given = names === undefined ? [] : names.split(':');
  let watch: number | undefined;
  let control: number | undefined;
  const unknown: Array<{ fd: number; name: string }> = [];
  for (let i = 0; i < n; i++) {
    const fd = FIRST_FD + i;
    const name = given[i] ?? (names === undefined && n <= 2 ? (i === 0 ? 'watch' : 'control') : 'unknown');
    if (name === 'watch' && watch === undefined) watch = fd;
    else if (name === 'control' && control === undefined) control = fd;
    else unknown.push({ fd, name });
  }
  return { watch, control, unknown };
}
