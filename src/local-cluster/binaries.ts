import {accessSync, constants, statSync} from 'node:fs'
import {homedir} from 'node:os'
import path from 'node:path'

import {invalidInput, KsctlError} from '../errors.js'
import {buildFromPinnedModule, goIsNewEnough, goVersion, pinnedModule, type PinnedModule} from './go-build.js'

/** Where the binaries came from, in the order they are looked for. */
export type BinarySource = 'flags' | 'KUBEBUILDER_ASSETS' | 'cache' | 'build'

export interface LocalClusterBinaries {
  kubeApiserver: string
  etcd: string
  source: BinarySource
}

export interface BinaryRequest {
  /** `--apiserver-bin` and `--etcd-bin`, which go together. */
  apiserverBin?: string | undefined
  etcdBin?: string | undefined
  /** The environment to read KUBEBUILDER_ASSETS, the cache's place and PATH (for go) from. */
  env?: NodeJS.ProcessEnv
  /** The pinned module; tests pass their own. */
  module?: PinnedModule
}

/**
 * Finds kube-apiserver and etcd, in this order: `--apiserver-bin`/`--etcd-bin`; KUBEBUILDER_ASSETS (the directory
 * controller-runtime's envtest fills with `setup-envtest use`); ksctl's cache; a build from the pinned Go module
 * into the cache when a new enough Go is on PATH. Otherwise the error names these four ways. A source that is
 * given but does not hold both binaries is an error, not a reason to look further: the user chose it.
 */
export async function resolveBinaries(request: BinaryRequest = {}): Promise<LocalClusterBinaries> {
  const env = request.env ?? process.env
  if (request.apiserverBin !== undefined || request.etcdBin !== undefined) {
    if (request.apiserverBin === undefined || request.etcdBin === undefined) {
      throw invalidInput('--apiserver-bin and --etcd-bin go together', [
        'give both, or neither to use KUBEBUILDER_ASSETS, the cache or a build',
      ])
    }
    return {
      kubeApiserver: executable(request.apiserverBin, '--apiserver-bin', 'kube-apiserver'),
      etcd: executable(request.etcdBin, '--etcd-bin', 'etcd'),
      source: 'flags',
    }
  }
  const assets = env.KUBEBUILDER_ASSETS
  if (assets !== undefined && assets !== '') {
    return {
      kubeApiserver: executable(path.join(assets, 'kube-apiserver'), 'KUBEBUILDER_ASSETS', 'kube-apiserver'),
      etcd: executable(path.join(assets, 'etcd'), 'KUBEBUILDER_ASSETS', 'etcd'),
      source: 'KUBEBUILDER_ASSETS',
    }
  }
  const module = request.module ?? pinnedModule()
  const cached = path.join(cacheRoot(env), 'local-cluster', module.buildName)
  const inCache = {kubeApiserver: path.join(cached, 'kube-apiserver'), etcd: path.join(cached, 'etcd')}
  if (isExecutable(inCache.kubeApiserver) && isExecutable(inCache.etcd)) return {...inCache, source: 'cache'}
  const go = await goVersion(env)
  if (go === undefined || !goIsNewEnough(go, module.go)) {
    throw noBinaries(module, cached, go)
  }
  await buildFromPinnedModule(module, cached, env)
  return {...inCache, source: 'build'}
}

/** ksctl's cache: KSCTL_CACHE_DIR, else `ksctl` in XDG_CACHE_HOME (default ~/.cache), as oclif places it. */
export function cacheRoot(env: NodeJS.ProcessEnv): string {
  const own = env.KSCTL_CACHE_DIR
  if (own !== undefined && own !== '') return own
  const xdg = env.XDG_CACHE_HOME
  return path.join(xdg !== undefined && xdg !== '' ? xdg : path.join(homedir(), '.cache'), 'ksctl')
}

function noBinaries(module: PinnedModule, cached: string, go: string | undefined): KsctlError {
  const goProblem =
    go === undefined
      ? 'there is no go on PATH'
      : `the go on PATH is Go ${go}, older than the Go ${module.go} the pinned module needs`
  return new KsctlError(
    `no kube-apiserver and etcd to run: none given, KUBEBUILDER_ASSETS is not set, none in ksctl's cache, and ${goProblem} to build them`,
    {
      code: 'PRECONDITION_FAILED',
      suggestions: [
        'give them: --apiserver-bin PATH --etcd-bin PATH',
        'or point KUBEBUILDER_ASSETS at envtest\'s directory holding both (e.g. KUBEBUILDER_ASSETS="$(setup-envtest use -p path)")',
        `or put both into ksctl's cache: ${cached}`,
        `or install Go ${module.go} or newer (https://go.dev/dl/): ksctl then builds kube-apiserver ${module.kubernetes} and etcd ${module.etcd} into that cache (minutes, once)`,
      ],
    },
  )
}

function executable(file: string, source: string, binary: string): string {
  if (!isExecutable(file)) {
    const reason = exists(file) ? 'is not an executable file' : 'does not exist'
    throw invalidInput(`${source}: ${file} ${reason}`, [
      source === 'KUBEBUILDER_ASSETS'
        ? 'KUBEBUILDER_ASSETS must name a directory holding kube-apiserver and etcd (setup-envtest use -p path prints one), or be unset'
        : `give the path of the ${binary} binary to ${source}`,
    ])
  }
  return file
}

function exists(file: string): boolean {
  try {
    statSync(file)
    return true
  } catch {
    return false
  }
}

function isExecutable(file: string): boolean {
  try {
    if (!statSync(file).isFile()) return false
    accessSync(file, constants.X_OK)
    return true
  } catch {
    return false
  }
}
