/**
 * What ksctl's OCI image is, as the build writes it and the tests check it: one image for both tower roles, the
 * role chosen by the arguments (`args: [tower, proxy, …]` in a Deployment).
 */
import {readFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

/** The repository's root: this file lives in `image/`. */
export const repositoryRoot = path.resolve(import.meta.dirname, '..')

/** ksctl's version, which tags the image (`ksctl:<version>`, as rendered manifests name it). */
export function packageVersion(repository = repositoryRoot): string {
  const manifest = JSON.parse(readFileSync(path.join(repository, 'package.json'), 'utf8')) as {
    version: string
  }
  return manifest.version
}

/** The Node.js the image runs: the same release CI runs the tests with (`.ci/run`'s NODE_VERSION). */
export const nodeVersion = '22.23.3'

/**
 * The user the image runs as, by number: kubelet can verify `runAsNonRoot` only for a numeric user, and
 * 65532 is the "nonroot" user of distroless images, which operators' policies often already allow.
 */
export const imageUser = {uid: 65532, gid: 65532, name: 'nonroot', home: '/home/nonroot'} as const

/** Where Node.js and ksctl are in the image. */
export const nodePath = '/usr/local/bin/node'
export const appDirectory = '/app'
export const tiniPath = '/usr/bin/tini'

/**
 * tini is PID 1 and runs Node as its child. Node as PID 1 gets no default signal actions from the kernel: a
 * SIGTERM that arrives before a tower command installs its handlers (while it loads, or while Kubernetes mode
 * waits for the API server) is ignored, and the kubelet then waits the whole grace period and kills it.
 */
export const entrypoint = [tiniPath, '--', nodePath, `${appDirectory}/bin/run.js`]

/** The Debian CA bundle, which Node trusts besides its own (NODE_USE_SYSTEM_CA reads SSL_CERT_FILE). */
export const caBundlePath = '/etc/ssl/certs/ca-certificates.crt'

export const imageEnvironment = [
  'PATH=/usr/local/bin:/usr/bin',
  'NODE_ENV=production',
  'NODE_USE_SYSTEM_CA=1',
  `SSL_CERT_FILE=${caBundlePath}`,
]

/** The agents' listener and the front end, at the tower proxy's default ports (documentation only). */
export const exposedPorts = ['8080/tcp', '6443/tcp']

/**
 * The Debian packages of the bottom layer: the C and C++ runtimes Node.js links against (libc6, libgcc-s1,
 * libstdc++6 and its gcc-12-base), tini, the CA certificates, and base-files/netbase for /etc/os-release and
 * /etc/services (scanners read the first). Only their files are taken, never their maintainer scripts.
 */
export const debianPackages = [
  'base-files',
  'netbase',
  'libc6',
  'libgcc-s1',
  'gcc-12-base',
  'libstdc++6',
  'ca-certificates',
  'tini',
] as const

/** Where `npm run image` writes its archive: `out/`, ignored by git. */
export const outputDirectory = path.join(repositoryRoot, 'out')

/** The OCI archive `npm run image` writes, named for the version inside it. */
export function imageArchivePath(version: string): string {
  return path.join(outputDirectory, `ksctl-${version}.oci.tar`)
}

/** The builds' cache: downloaded .deb files by version, and the lower layers by the hash of what made them. */
export function cacheDirectory(): string {
  return path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'ksctl-image')
}

/** The layers, bottom first, each named for what it holds (their order puts what changes most on top). */
export const layerNames = ['debian', 'node', 'dependencies', 'ksctl'] as const
export type LayerName = (typeof layerNames)[number]

/** Each layer's history entry says which it is: the tests and `skopeo inspect --config` read them by this. */
export function layerCreatedBy(name: LayerName, what: string): string {
  return `ksctl image layer ${name}: ${what}`
}

export const label = {
  title: 'org.opencontainers.image.title',
  description: 'org.opencontainers.image.description',
  version: 'org.opencontainers.image.version',
  revision: 'org.opencontainers.image.revision',
  source: 'org.opencontainers.image.source',
  created: 'org.opencontainers.image.created',
  licenses: 'org.opencontainers.image.licenses',
} as const
