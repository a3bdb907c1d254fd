// CPU time from /proc/self/stat, for the benchmarks: this process's own (utime, stime) and that
// of its children it has waited for (cutime, cstime), in clock ticks (100 a second on Linux).
// 0 where there is no /proc.
import { readFileSync } from "node:fs";

export function procCpuMs(o: { self: boolean; children: boolean }): number {
  try {
    const stat = readFileSync("/proc/self/stat", "utf8");
    // The fields after the command name, which is in parentheses and may hold spaces.
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = (o.self ? Number(f[11]) + Number(f[12]) : 0) + (o.children ? Number(f[13]) + Number(f[14]) : 0);
    return ticks * 10;
  } catch {
    return 0;
  }
}
