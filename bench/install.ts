import {existsSync} from 'node:fs'
import {mkdir} from 'node:fs/promises'
import {homedir} from 'node:os'
import path from 'node:path'

import type {Availability} from './paths/path.js'
import {runCommand} from './processes.js'

/** Outside the git tree, so that it survives a fresh clone on the same machine. */
export const cacheDirectory = path.join(homedir(), '.cache', 'ksctl-bench')

export const chiselVersion = 'v1.11.3'
const chiselModule = 'github.com/jpillora/chisel'
export const chiselBinary = path.join(cacheDirectory, 'bin', `chisel-${chiselVersion}`)

const installs = new Map<string, Promise<Availability>>()

/** Each install runs once per harness run, however many paths ask for it. */
function once(key: string, install: () => Promise<Availability>): Promise<Availability> {
  let pending = installs.get(key)
  if (pending === undefined) {
    pending = install()
    installs.set(key, pending)
  }
  return pending
}

/** Installs the Debian packages that provide the given programs unless they are all present already. */
export function ensureDebianPrograms(programs: Record<string, string>): Promise<Availability> {
  const missing = Object.entries(programs).filter(([program]) => !existsSync(program))
  if (missing.length === 0) return Promise.resolve({available: true})
  const packages = [...new Set(missing.map(([, debianPackage]) => debianPackage))].sort()
  return once(`apt:${packages.join(',')}`, async () => {
    if (process.getuid?.() !== 0) {
      return {available: false, reason: `${packages.join(', ')} not installed and apt-get needs root`}
    }
    const environment = {...process.env, DEBIAN_FRONTEND: 'noninteractive'}
    const update = await runCommand('apt-get', ['update', '-qq'], {env: environment})
    if (update.code !== 0) return {available: false, reason: `apt-get update failed: ${update.output}`}
    const install = await runCommand('apt-get', ['install', '-y', '-qq', ...packages], {env: environment})
    if (install.code !== 0) return {available: false, reason: `apt-get install failed: ${install.output}`}
    const stillMissing = missing.filter(([program]) => !existsSync(program)).map(([program]) => program)
    return stillMissing.length === 0
      ? {available: true}
      : {available: false, reason: `${stillMissing.join(', ')} missing after apt-get install`}
  })
}

/**
 * Builds the pinned chisel from the Go module proxy into the cache. `go install MODULE@VERSION` would be
 * the one-liner, but it also asks the proxy for the module's version list (to look for a deprecation),
 * and a proxy that serves only pinned versions refuses that; downloading the pinned version and building
 * it needs nothing else.
 */
export function ensureChisel(): Promise<Availability> {
  if (existsSync(chiselBinary)) return Promise.resolve({available: true})
  return once('chisel', async () => {
    const download = await runCommand('go', ['mod', 'download', '-json', `${chiselModule}@${chiselVersion}`])
    if (download.code !== 0) {
      return {
        available: false,
        reason: `go mod download ${chiselModule}@${chiselVersion} failed: ${download.output}`,
      }
    }
    const {Dir: sourceDirectory} = JSON.parse(download.output) as {Dir: string}
    await mkdir(path.dirname(chiselBinary), {recursive: true})
    const build = await runCommand(
      'go',
      [
        'build',
        '-mod=mod',
        '-ldflags',
        `-X ${chiselModule}/share.BuildVersion=${chiselVersion}`,
        '-o',
        chiselBinary,
        '.',
      ],
      {cwd: sourceDirectory, env: {...process.env, GOFLAGS: '-mod=mod'}},
    )
    return build.code === 0
      ? {available: true}
      : {available: false, reason: `building chisel ${chiselVersion} failed: ${build.output}`}
  })
}
