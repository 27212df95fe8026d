import {createHash} from 'node:crypto'
import {readFileSync, rmSync} from 'node:fs'
import {mkdir, mkdtemp, rename, rm} from 'node:fs/promises'
import path from 'node:path'

import {execa} from 'execa'

import {progress} from '../cli/progress.js'
import {KsctlError} from '../errors.js'
import {log} from '../log.js'
import {templatePath} from '../package-root.js'
import {onExitOrSignal} from './processes.js'

/**
 * The Go module that pins kube-apiserver and etcd (`templates/local-cluster`, shipped with ksctl): what it pins,
 * the oldest Go that builds it, and the name of its build in the cache, which changes with go.mod or go.sum.
 */
export interface PinnedModule {
  dir: string
  kubernetes: string
  etcd: string
  /** go.mod's `go` line. */
  go: string
  /** `kube-VERSION-etcd-VERSION-HASH`, HASH the first 12 hex digits of sha256(go.mod + go.sum). */
  buildName: string
}

export function pinnedModule(dir = templatePath('local-cluster')): PinnedModule {
  const goMod = readFileSync(path.join(dir, 'go.mod'), 'utf8')
  const goSum = readFileSync(path.join(dir, 'go.sum'), 'utf8')
  const required = (module: string): string => {
    const version = new RegExp(`^\\s*${module.replaceAll('.', '\\.')} (v\\S+)`, 'm').exec(goMod)?.[1]
    if (version === undefined) throw damaged(dir, `it requires no ${module}`)
    return version
  }
  const go = /^go (\S+)$/m.exec(goMod)?.[1]
  if (go === undefined) throw damaged(dir, 'it has no go line')
  const kubernetes = required('k8s.io/kubernetes')
  const etcd = required('go.etcd.io/etcd/server/v3')
  const hash = createHash('sha256')
    .update(goMod + goSum)
    .digest('hex')
    .slice(0, 12)
  return {dir, kubernetes, etcd, go, buildName: `kube-${kubernetes}-etcd-${etcd}-${hash}`}
}

/** The version of the Go on PATH (`1.26.8`; `devel …` for a development build), if there is one. */
export async function goVersion(env: NodeJS.ProcessEnv): Promise<string | undefined> {
  try {
    // GOTOOLCHAIN=local: the Go that will build, not one it would download.
    const {stdout} = await execa('go', ['env', 'GOVERSION'], {
      env: {...env, GOTOOLCHAIN: 'local'},
      stdin: 'ignore',
    })
    return stdout.trim().replace(/^go/, '')
  } catch {
    return undefined
  }
}

/** Whether Go `have` builds a module whose go line is `need`. A development build of Go is taken as new enough. */
export function goIsNewEnough(have: string, need: string): boolean {
  if (!/^\d/.test(have)) return true
  const parts = (version: string) => version.split(/[.a-z]/).map((part) => Number.parseInt(part, 10) || 0)
  const [a, b] = [parts(have), parts(need)]
  for (let index = 0; index < Math.max(a.length, b.length); index++) {
    const difference = (a[index] ?? 0) - (b[index] ?? 0)
    if (difference !== 0) return difference > 0
  }
  return true
}

/**
 * Builds kube-apiserver and etcd from the pinned module into `target` (created whole or not at all: a build
 * goes to a directory of its own and is renamed into place, so two builds at once cannot mix). Shows progress
 * on stderr: a cold build takes minutes.
 */
export async function buildFromPinnedModule(
  module: PinnedModule,
  target: string,
  env: NodeJS.ProcessEnv,
): Promise<void> {
  await mkdir(path.dirname(target), {recursive: true})
  const building = await mkdtemp(`${target}.tmp-`)
  const forgetCleanup = onExitOrSignal(() => {
    rmSyncQuietly(building)
  })
  const goEnv = {
    ...env,
    CGO_ENABLED: '0',
    GOWORK: 'off',
    GOTOOLCHAIN: 'local',
    GOFLAGS: '-mod=readonly',
  }
  const minor = module.kubernetes.split('.')[1] ?? ''
  const stamp = [
    `-X k8s.io/component-base/version.gitVersion=${module.kubernetes}`,
    '-X k8s.io/component-base/version.gitMajor=1',
    `-X k8s.io/component-base/version.gitMinor=${minor}`,
    '-X k8s.io/component-base/version.gitTreeState=clean',
  ].join(' ')
  const builds = [
    {
      what: `kube-apiserver ${module.kubernetes}`,
      binary: 'kube-apiserver',
      ldflags: `-s -w ${stamp}`,
      main: 'k8s.io/kubernetes/cmd/kube-apiserver',
    },
    {what: `etcd ${module.etcd}`, binary: 'etcd', ldflags: '-s -w', main: 'go.etcd.io/etcd/server/v3'},
  ]
  progress.begin(`kube-apiserver and etcd to be built into ${target}`, 0)
  try {
    for (const [index, build] of builds.entries()) {
      progress.update(
        `building ${build.what} from the pinned Go modules (${index + 1} of ${builds.length}; a first build takes minutes)`,
      )
      const result = await execa(
        'go',
        [
          'build',
          '-trimpath',
          '-ldflags',
          build.ldflags,
          '-o',
          path.join(building, build.binary),
          build.main,
        ],
        {cwd: module.dir, env: goEnv, reject: false, stdin: 'ignore', all: true},
      )
      if (result.exitCode !== 0) {
        throw new KsctlError(
          `building ${build.what} failed (go build in ${module.dir}, exit code ${String(result.exitCode)}):\n` +
            result.all.trim().split('\n').slice(-20).join('\n'),
          {
            code: 'INTERNAL',
            suggestions: [
              'Go needs the pinned modules: from the module proxy (network), or already in GOMODCACHE',
              'or give ready-made binaries: --apiserver-bin and --etcd-bin, or KUBEBUILDER_ASSETS',
            ],
          },
        )
      }
    }
    try {
      await rename(building, target)
    } catch (error) {
      // Another build finished first: its binaries are the same ones.
      if (!['EEXIST', 'ENOTEMPTY'].includes((error as NodeJS.ErrnoException).code ?? '')) throw error
    }
    progress.end()
    log.info(`built kube-apiserver ${module.kubernetes} and etcd ${module.etcd} into ${target}`)
  } finally {
    progress.stop()
    await rm(building, {recursive: true, force: true})
    forgetCleanup()
  }
}

function damaged(dir: string, reason: string): KsctlError {
  return new KsctlError(
    `the Go module ${path.join(dir, 'go.mod')} that pins kube-apiserver is damaged: ${reason}`,
    {
      code: 'INTERNAL',
      suggestions: ['reinstall ksctl'],
    },
  )
}

function rmSyncQuietly(dir: string): void {
  // Exiting: a directory that cannot go stays behind, with a name that says it is unfinished.
  try {
    rmSync(dir, {recursive: true, force: true})
  } catch {
    // nothing more to do on the way out
  }
}
