/** The machine a run came from: CPU, cores, kernel, Node, nft and iptables versions. */
import { execFileSync } from 'node:child_process'
import { cpus, release, totalmem } from 'node:os'

export interface Machine {
  cpu: string
  cores: number
  memoryGiB: number
  kernel: string
  node: string
  nft: string
  iptables: string
  virtualization: string
}

const tryRun = (file: string, args: readonly string[]): string => {
  try {
    return execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim()
  } catch {
    return 'unavailable'
  }
}

export function machine(): Machine {
  return {
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: release(),
    node: process.version,
    nft: tryRun('nft', ['--version']),
    iptables: tryRun('iptables', ['--version']),
    virtualization: tryRun('systemd-detect-virt', []),
  }
}
