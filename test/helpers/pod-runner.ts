/**
 * Runs a rendered Deployment's container from ksctl's unpacked image the way a kubelet and a container runtime
 * would, on a machine where neither can run (podman and crun need cgroups this kind of machine does not give):
 * a private mount, PID, UTS and IPC namespace from `unshare`, an overlay of the image's root file system, the
 * kubelet's files and volumes bind-mounted in, the container's user, and its probes. The network is the host's
 * (as `hostNetwork: true`), so probes and clients reach the container's ports on 127.0.0.1.
 *
 * The container's init (tini in ksctl's image) is PID 1 of its namespace: when it exits, the kernel kills
 * every other process in it, and the mounts go with the last of them, so a stopped pod leaves nothing running
 * or mounted. Needs root (mount namespaces, chroot).
 */
import {readFileSync} from 'node:fs'
import {randomBytes} from 'node:crypto'
import {
  chmod,
  chown,
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  rename,
  rm,
  writeFile,
} from 'node:fs/promises'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import path from 'node:path'

import type {
  V1Container,
  V1Deployment,
  V1EnvVar,
  V1KeyToPath,
  V1PodSpec,
  V1Probe,
  V1Volume,
} from '@kubernetes/client-node'
import {execa, type ResultPromise} from 'execa'

import type {UnpackedImage} from '../../image/unpack.js'
import {tempDir} from './temp-dir.js'

export interface PodServiceAccount {
  token: string
  caCert: string
  namespace: string
}

/** Data of a Secret (keys to values) or a ConfigMap. */
export type ObjectData = Record<string, string | Buffer>

/**
 * Where the kubelet reads the Secrets and ConfigMaps a pod names, in the pod's namespace: `undefined` when the
 * object is not there (a failure to read it is an error).
 */
export interface ObjectSource {
  secret(namespace: string, name: string): Promise<ObjectData | undefined>
  configMap(namespace: string, name: string): Promise<ObjectData | undefined>
}

export interface RunPodOptions {
  /** A rendered Deployment (as an object): its pod template's first container runs, or `container` by name. */
  deployment: V1Deployment
  container?: string
  /** The unpacked image every image reference of the Deployment maps to. */
  image: UnpackedImage
  /** What the kubelet mounts at /var/run/secrets/kubernetes.io/serviceaccount (unless automount is off). */
  serviceAccount?: PodServiceAccount
  /** The API server the kubernetes Service stands for: KUBERNETES_SERVICE_HOST/PORT. */
  apiServer: {host: string; port: number}
  /** The Secrets and ConfigMaps the pod's volumes and env name, by name: their data, keys to values, fixed. */
  secrets?: Record<string, Record<string, string | Buffer>>
  configMaps?: Record<string, Record<string, string>>
  /**
   * Instead of `secrets` and `configMaps`: where their current data is read, at the start (volumes and env) and
   * then every `volumeSyncMs` for the Secret, ConfigMap and projected volumes the container mounts as directories,
   * whose changed files are then replaced, as the kubelet's periodic sync does. Env stays as it was at the start,
   * and so does a file mounted alone (subPath), as with the kubelet.
   */
  objectSource?: ObjectSource
  /**
   * How often the volumes are synced with `objectSource` (1000 ms unless given). The real kubelet takes up to its
   * sync period (--sync-frequency, 1 minute) plus its Secret and ConfigMap cache's delay, about a minute in all
   * (https://kubernetes.io/docs/concepts/configuration/configmap/#mounted-configmaps-are-updated-automatically).
   */
  volumeSyncMs?: number
  /** Set last, over the container's own env (a test's extra, such as a debug log level). */
  env?: Record<string, string>
  /** The pod's name (HOSTNAME, the downward API); the Deployment's name and a suffix unless given. */
  podName?: string
  /** Each line the container writes, for the test's output on failure. */
  log?: (line: string) => void
  /** Wait after an exit or a liveness kill before starting again (kubelet: 10 s, doubling). */
  restartBackoffMs?: number
}

export interface ContainerExit {
  exitCode: number | undefined
  signal: string | undefined
}

export interface RunningPod {
  name: string
  /** Resolves when the readiness probe passes (at start without one); rejects if the container exits first. */
  ready(timeoutMs?: number): Promise<void>
  /** SIGTERM to the container's PID 1, the grace period, then SIGKILL; resolves when nothing of it is left. */
  stop(gracePeriodSeconds?: number): Promise<ContainerExit>
  /** What the container wrote on stdout and stderr, all runs together. */
  output(): string
  /**
   * What the kubelet would report as events (Started, Unhealthy, Killing, BackOff, FailedMount), and the pod
   * runner's own VolumeUpdated when a sync changed a volume's files (the kubelet reports those in its log only).
   */
  events: string[]
  restartCount(): number
  /** The host's PID of the container's init (PID 1 inside), while it runs. */
  hostPid(): number | undefined
  /** The root as the container sees it, on the host (its overlay's upper layer: what it wrote). */
  podDirectory: string
}

const serviceAccountPath = '/var/run/secrets/kubernetes.io/serviceaccount'
const defaultVolumeMode = 0o644
const defaultVolumeSyncMs = 1000

export async function runPod(options: RunPodOptions): Promise<RunningPod> {
  if (process.getuid?.() !== 0)
    throw new Error('the pod runner needs root: mount namespaces, overlay mounts and chroot')
  const template = options.deployment.spec?.template
  const spec = template?.spec
  if (spec === undefined) throw new Error(`Deployment ${deploymentName(options)} has no pod template`)
  const container =
    options.container === undefined
      ? spec.containers[0]
      : spec.containers.find((candidate) => candidate.name === options.container)
  if (container === undefined)
    throw new Error(`Deployment ${deploymentName(options)} has no container ${options.container ?? ''}`)
  for (const probe of [container.startupProbe, container.readinessProbe, container.livenessProbe])
    if (probe !== undefined && probe.httpGet === undefined && probe.tcpSocket === undefined)
      throw new Error(`container ${container.name}: the pod runner runs httpGet and tcpSocket probes only`)

  if (options.objectSource !== undefined && (options.secrets ?? options.configMaps) !== undefined)
    throw new Error(
      `Deployment ${deploymentName(options)}: give runPod an objectSource or secrets and configMaps, not both`,
    )

  const name = options.podName ?? `${deploymentName(options)}-${Math.random().toString(36).slice(2, 7)}`
  const namespace = options.deployment.metadata?.namespace ?? 'default'
  const podDirectory = tempDir(`ksctl-pod-${name}-`)
  const objects = options.objectSource ?? fixedObjects(options)
  const pod: PodContext = {options, spec, container, name, namespace, podDirectory, objects}
  const user = await containerUser(pod)
  const {mounts, synced} = await writeVolumes(pod)
  const environment = await containerEnvironment(pod, user)
  const argv = containerCommand(pod, environment)
  const script = await setupScript(pod, mounts, user, environment, argv)
  const scriptPath = path.join(podDirectory, 'setup.sh')
  await writeFile(scriptPath, script, {mode: 0o700})
  const running = new PodProcess(pod, scriptPath).start()
  // Fixed data never changes: only a source is synced.
  if (options.objectSource !== undefined)
    running.syncVolumes(synced, options.volumeSyncMs ?? defaultVolumeSyncMs)
  return running
}

function fixedObjects(options: RunPodOptions): ObjectSource {
  return {
    secret: (_namespace, name) => Promise.resolve(options.secrets?.[name]),
    configMap: (_namespace, name) => Promise.resolve(options.configMaps?.[name]),
  }
}

interface PodContext {
  options: RunPodOptions
  spec: V1PodSpec
  container: V1Container
  name: string
  namespace: string
  podDirectory: string
  objects: ObjectSource
}

function deploymentName(options: RunPodOptions): string {
  return options.deployment.metadata?.name ?? 'unnamed'
}

interface ContainerUser {
  uid: number
  gid: number
  groups: number[]
  home: string
}

/** runAsUser/runAsGroup of the container, else of the pod, else the image's USER; the home from its passwd. */
async function containerUser({options, spec, container}: PodContext): Promise<ContainerUser> {
  const passwd = (await readFile(path.join(options.image.rootfs, 'etc/passwd'), 'utf8').catch(() => ''))
    .split('\n')
    .map((line) => line.split(':'))
  const [imageUser, imageGroup] = (options.image.config.User ?? '0').split(':')
  const byNameOrNumber = (value: string | undefined) =>
    value === undefined || value === ''
      ? undefined
      : /^\d+$/.test(value)
        ? Number(value)
        : Number(passwd.find((entry) => entry[0] === value)?.[2] ?? NaN)
  const uid =
    container.securityContext?.runAsUser ?? spec.securityContext?.runAsUser ?? byNameOrNumber(imageUser) ?? 0
  if (Number.isNaN(uid)) throw new Error(`the image's user ${imageUser ?? ''} is not in its /etc/passwd`)
  const entry = passwd.find((fields) => Number(fields[2]) === uid)
  const gid =
    container.securityContext?.runAsGroup ??
    spec.securityContext?.runAsGroup ??
    (uid === byNameOrNumber(imageUser) ? byNameOrNumber(imageGroup) : undefined) ??
    Number(entry?.[3] ?? 0)
  const runAsNonRoot = container.securityContext?.runAsNonRoot ?? spec.securityContext?.runAsNonRoot
  if (runAsNonRoot === true && uid === 0)
    throw new Error(`container ${container.name} has runAsNonRoot and would run as root (kubelet refuses it)`)
  const fsGroup = spec.securityContext?.fsGroup
  const groups = [
    ...new Set([
      gid,
      ...(spec.securityContext?.supplementalGroups ?? []),
      ...(fsGroup === undefined ? [] : [fsGroup]),
    ]),
  ]
  return {uid, gid, groups, home: entry?.[5] ?? '/'}
}

interface Mount {
  source: string
  /** Inside the container. */
  target: string
  readOnly: boolean
  file: boolean
}

/** A Secret, ConfigMap or projected volume as written in the pod's directory: what a sync compares with. */
interface WrittenVolume {
  volume: V1Volume
  directory: string
  files: Map<string, VolumeFile>
}

/**
 * Writes each volume the container mounts into the pod's directory as the kubelet would (files with their mode,
 * group-owned by fsGroup), and returns the bind mounts, the service account's first, and the volumes a sync
 * updates: those mounted as a directory. A file mounted alone (subPath) is bound by its inode, which an update
 * replaces rather than changes, so the container keeps the old file, as with the real kubelet
 * (https://github.com/kubernetes/kubernetes/issues/50345); the pod runner does not update those at all.
 */
async function writeVolumes(pod: PodContext): Promise<{mounts: Mount[]; synced: WrittenVolume[]}> {
  const {options, spec, container, podDirectory} = pod
  const fsGroup = spec.securityContext?.fsGroup
  const volumesDirectory = path.join(podDirectory, 'volumes')
  const mounts: Mount[] = []
  const writeFiles = async (directory: string, files: VolumeFile[]) => {
    await mkdir(directory, {recursive: true, mode: 0o755})
    for (const file of files) await writeVolumeFile(directory, file, fsGroup)
  }

  const automount = spec.automountServiceAccountToken ?? true
  const mountsServiceAccount = container.volumeMounts?.some((mount) => mount.mountPath === serviceAccountPath)
  if (automount && mountsServiceAccount !== true) {
    const account = options.serviceAccount
    if (account === undefined)
      throw new Error(
        `Deployment ${deploymentName(options)} mounts its service account token (automountServiceAccountToken is not false): give runPod a serviceAccount`,
      )
    const directory = path.join(volumesDirectory, 'kube-api-access')
    await writeFiles(directory, [
      {path: 'token', content: account.token, mode: defaultVolumeMode},
      {path: 'ca.crt', content: account.caCert, mode: defaultVolumeMode},
      {path: 'namespace', content: account.namespace, mode: defaultVolumeMode},
    ])
    mounts.push({source: directory, target: serviceAccountPath, readOnly: true, file: false})
  }

  const volumes = new Map((spec.volumes ?? []).map((volume) => [volume.name, volume]))
  const written = new Map<string, WrittenVolume | 'emptyDir'>()
  const synced = new Set<WrittenVolume>()
  for (const volumeMount of container.volumeMounts ?? []) {
    const volume = volumes.get(volumeMount.name)
    if (volume === undefined)
      throw new Error(
        `container ${container.name} mounts volume ${volumeMount.name}, which the pod does not have`,
      )
    const directory = path.join(volumesDirectory, volume.name)
    let contents = written.get(volume.name)
    if (contents === undefined) {
      const files = await volumeFiles(pod, volume)
      if (files === 'emptyDir') {
        await mkdir(directory, {recursive: true})
        await chmod(directory, 0o777)
        contents = 'emptyDir'
      } else {
        await writeFiles(directory, files)
        contents = {volume, directory, files: byPath(files)}
      }
      written.set(volume.name, contents)
    }
    const subPath = volumeMount.subPath ?? ''
    if (contents !== 'emptyDir' && subPath === '') synced.add(contents)
    const source = path.join(directory, subPath)
    const file = (await lstat(source).catch(() => undefined))?.isFile() === true
    mounts.push({
      source,
      target: volumeMount.mountPath,
      // The kubelet mounts Secret, ConfigMap and projected volumes read-only whatever the mount says.
      readOnly: volumeMount.readOnly === true || contents !== 'emptyDir',
      file,
    })
  }
  return {mounts, synced: [...synced]}
}

/**
 * One file of a volume, written whole under a temporary name in its directory and renamed over the old one, so
 * that the container, which sees the directory through its bind mount, reads the old file or the new, never a
 * part. (The kubelet swaps a `..data` link to a new directory, which changes all files at once; one rename per
 * file is enough for a reader of one file.) With fsGroup, the kubelet gives the group read access whatever the
 * mode says.
 */
async function writeVolumeFile(
  directory: string,
  file: VolumeFile,
  fsGroup: number | undefined,
): Promise<void> {
  const target = path.join(directory, file.path)
  await mkdir(path.dirname(target), {recursive: true, mode: 0o755})
  const mode = fsGroup === undefined ? file.mode : file.mode | 0o040
  const temporary = path.join(
    path.dirname(target),
    `..${path.basename(target)}.${randomBytes(4).toString('hex')}`,
  )
  await writeFile(temporary, file.content, {mode})
  await chmod(temporary, mode)
  if (fsGroup !== undefined) await chown(temporary, 0, fsGroup)
  await rename(temporary, target)
}

function byPath(files: VolumeFile[]): Map<string, VolumeFile> {
  return new Map(files.map((file) => [file.path, file]))
}

/**
 * The kubelet's sync of one volume: projects its objects' current data again, replaces each file that changed,
 * writes each new one and removes each gone. Returns the paths it changed.
 */
async function syncVolume(pod: PodContext, written: WrittenVolume): Promise<string[]> {
  const files = await volumeFiles(pod, written.volume)
  if (files === 'emptyDir') return []
  const fsGroup = pod.spec.securityContext?.fsGroup
  const changed: string[] = []
  for (const file of files) {
    const before = written.files.get(file.path)
    if (before?.mode === file.mode && Buffer.from(before.content).equals(Buffer.from(file.content))) continue
    await writeVolumeFile(written.directory, file, fsGroup)
    changed.push(file.path)
  }
  const now = byPath(files)
  for (const gone of [...written.files.keys()].filter((file) => !now.has(file))) {
    await rm(path.join(written.directory, gone), {force: true})
    changed.push(gone)
  }
  written.files = now
  return changed
}

interface VolumeFile {
  path: string
  content: string | Buffer
  mode: number
}

async function volumeFiles(pod: PodContext, volume: V1Volume): Promise<VolumeFile[] | 'emptyDir'> {
  if (volume.emptyDir !== undefined) return 'emptyDir'
  if (volume.secret !== undefined) {
    const {secretName = '', items, defaultMode, optional} = volume.secret
    return keyFiles(
      await lookUp(pod, 'Secret', secretName, optional),
      items,
      defaultMode ?? defaultVolumeMode,
      `Secret ${secretName}`,
    )
  }
  if (volume.configMap !== undefined) {
    const {name = '', items, defaultMode, optional} = volume.configMap
    return keyFiles(
      await lookUp(pod, 'ConfigMap', name, optional),
      items,
      defaultMode ?? defaultVolumeMode,
      `ConfigMap ${name}`,
    )
  }
  if (volume.projected !== undefined) {
    const mode = volume.projected.defaultMode ?? defaultVolumeMode
    const files: VolumeFile[] = []
    for (const source of volume.projected.sources ?? []) {
      if (source.secret !== undefined) {
        const {name = '', items, optional} = source.secret
        files.push(...keyFiles(await lookUp(pod, 'Secret', name, optional), items, mode, `Secret ${name}`))
      } else if (source.configMap !== undefined) {
        const {name = '', items, optional} = source.configMap
        files.push(
          ...keyFiles(await lookUp(pod, 'ConfigMap', name, optional), items, mode, `ConfigMap ${name}`),
        )
      } else if (source.serviceAccountToken !== undefined) {
        const token = pod.options.serviceAccount?.token
        if (token === undefined)
          throw new Error(
            `volume ${volume.name} projects a service account token: give runPod a serviceAccount`,
          )
        files.push({path: source.serviceAccountToken.path, content: token, mode})
      } else {
        throw new Error(`volume ${volume.name}: the pod runner projects Secrets, ConfigMaps and tokens only`)
      }
    }
    return files
  }
  throw new Error(
    `volume ${volume.name}: the pod runner supports emptyDir, secret, configMap and projected volumes only`,
  )
}

async function lookUp(
  pod: PodContext,
  kind: 'Secret' | 'ConfigMap',
  name: string,
  optional: boolean | undefined,
): Promise<ObjectData> {
  const data =
    kind === 'Secret'
      ? await pod.objects.secret(pod.namespace, name)
      : await pod.objects.configMap(pod.namespace, name)
  if (data !== undefined) return data
  if (optional === true) return {}
  // The kubelet would leave the pod in ContainerCreating (or, once it runs, report FailedMount and keep the
  // files); a test wants to hear why at once.
  throw new Error(
    pod.options.objectSource === undefined
      ? `the pod needs ${kind} ${name}: give it to runPod (${kind === 'Secret' ? 'secrets' : 'configMaps'})`
      : `the pod needs ${kind} ${pod.namespace}/${name}, which runPod's objectSource does not have`,
  )
}

function keyFiles(
  data: ObjectData,
  items: V1KeyToPath[] | undefined,
  mode: number,
  what: string,
): VolumeFile[] {
  if (items === undefined) return Object.entries(data).map(([key, content]) => ({path: key, content, mode}))
  return items.map((item) => {
    const content = data[item.key]
    if (content === undefined) throw new Error(`${what} has no key ${item.key}`)
    return {path: item.path, content, mode: item.mode ?? mode}
  })
}

/** The image's env, the kubernetes Service's, the container's envFrom and env (in order), then the test's. */
async function containerEnvironment(pod: PodContext, user: ContainerUser): Promise<Map<string, string>> {
  const {options, container, name} = pod
  const environment = new Map<string, string>()
  for (const variable of options.image.config.Env ?? []) {
    const separator = variable.indexOf('=')
    environment.set(variable.slice(0, separator), variable.slice(separator + 1))
  }
  const {host, port} = options.apiServer
  environment.set('HOSTNAME', name)
  environment.set('KUBERNETES_SERVICE_HOST', host)
  environment.set('KUBERNETES_SERVICE_PORT', String(port))
  environment.set('KUBERNETES_SERVICE_PORT_HTTPS', String(port))
  environment.set('KUBERNETES_PORT', `tcp://${host}:${String(port)}`)
  for (const source of container.envFrom ?? []) {
    const data = source.secretRef
      ? await lookUp(pod, 'Secret', source.secretRef.name ?? '', source.secretRef.optional)
      : source.configMapRef
        ? await lookUp(pod, 'ConfigMap', source.configMapRef.name ?? '', source.configMapRef.optional)
        : {}
    for (const [key, value] of Object.entries(data))
      environment.set(`${source.prefix ?? ''}${key}`, String(value))
  }
  for (const variable of container.env ?? []) {
    const value = await envValue(pod, variable, environment)
    if (value !== undefined) environment.set(variable.name, value)
  }
  for (const [key, value] of Object.entries(options.env ?? {})) environment.set(key, value)
  // The runtime sets HOME from the user's passwd entry when the image and the pod do not.
  if (!environment.has('HOME')) environment.set('HOME', user.home)
  return environment
}

async function envValue(
  pod: PodContext,
  variable: V1EnvVar,
  environment: Map<string, string>,
): Promise<string | undefined> {
  if (variable.valueFrom === undefined) return expand(variable.value ?? '', environment)
  const {secretKeyRef, configMapKeyRef, fieldRef} = variable.valueFrom
  if (secretKeyRef !== undefined) {
    const value = (await lookUp(pod, 'Secret', secretKeyRef.name ?? '', secretKeyRef.optional))[
      secretKeyRef.key
    ]
    if (value === undefined && secretKeyRef.optional !== true)
      throw new Error(
        `env ${variable.name}: Secret ${secretKeyRef.name ?? ''} has no key ${secretKeyRef.key}`,
      )
    return value === undefined ? undefined : String(value)
  }
  if (configMapKeyRef !== undefined) {
    const value = (await lookUp(pod, 'ConfigMap', configMapKeyRef.name ?? '', configMapKeyRef.optional))[
      configMapKeyRef.key
    ]
    if (value === undefined && configMapKeyRef.optional !== true)
      throw new Error(
        `env ${variable.name}: ConfigMap ${configMapKeyRef.name ?? ''} has no key ${configMapKeyRef.key}`,
      )
    return value === undefined ? undefined : String(value)
  }
  if (fieldRef !== undefined) {
    const fields: Record<string, string> = {
      'metadata.name': pod.name,
      'metadata.namespace': pod.namespace,
      'spec.serviceAccountName': pod.spec.serviceAccountName ?? 'default',
      'spec.nodeName': 'pod-runner',
      'status.podIP': '127.0.0.1',
      'status.hostIP': '127.0.0.1',
    }
    const value = fields[fieldRef.fieldPath]
    if (value === undefined)
      throw new Error(`env ${variable.name}: the pod runner has no field ${fieldRef.fieldPath}`)
    return value
  }
  throw new Error(
    `env ${variable.name}: the pod runner resolves secretKeyRef, configMapKeyRef and fieldRef only`,
  )
}

/** The kubelet's `$(NAME)` expansion: defined names are replaced, `$$` escapes, anything else stays as written. */
export function expand(text: string, environment: Map<string, string>): string {
  return text.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (match, name: string | undefined) =>
    name === undefined ? '$' : (environment.get(name) ?? match),
  )
}

/** command replaces the image's Entrypoint (and drops its Cmd); args replace Cmd. */
function containerCommand({options, container}: PodContext, environment: Map<string, string>): string[] {
  const command = container.command ?? options.image.config.Entrypoint ?? []
  const args = container.args ?? (container.command === undefined ? (options.image.config.Cmd ?? []) : [])
  const argv = [...command, ...args].map((part) => expand(part, environment))
  if (argv.length === 0)
    throw new Error(`container ${container.name} has no command and the image no entrypoint`)
  return argv
}

function quote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`
}

/**
 * The path `inside` resolves to under `root`, following the image's symbolic links as the container would see
 * them, so that a link in the image can never send a mount outside the root.
 */
async function resolveInRoot(root: string, inside: string): Promise<string> {
  const pending = inside.split('/').filter((part) => part !== '' && part !== '.')
  let resolved: string[] = []
  for (let links = 0; pending.length > 0;) {
    const part = pending.shift() ?? ''
    if (part === '..') {
      resolved.pop()
      continue
    }
    const candidate = path.join(root, ...resolved, part)
    const stat = await lstat(candidate).catch(() => undefined)
    if (stat?.isSymbolicLink() !== true) {
      resolved.push(part)
      continue
    }
    if (++links > 40) throw new Error(`too many symbolic links under ${inside} in the image`)
    const target = await readlink(candidate)
    if (target.startsWith('/')) resolved = []
    pending.unshift(...target.split('/').filter((piece) => piece !== '' && piece !== '.'))
  }
  return `/${resolved.join('/')}`
}

/**
 * The shell script (the host's shell: the image has none) that runs inside the new namespaces: it mounts the
 * overlay root, /proc, a small /dev, the kubelet's /etc files and the volumes, then becomes the container: the
 * user's groups (setpriv), the root, working directory and user (unshare --root --wd --setuid), the command.
 */
async function setupScript(
  pod: PodContext,
  mounts: Mount[],
  user: ContainerUser,
  environment: Map<string, string>,
  argv: string[],
): Promise<string> {
  const {options, container, podDirectory, name} = pod
  const root = path.join(podDirectory, 'root')
  const upper = path.join(podDirectory, 'upper')
  const work = path.join(podDirectory, 'work')
  const at = async (inside: string) =>
    quote(path.join(root, await resolveInRoot(options.image.rootfs, inside)))
  const lines = [
    'set -eu',
    // A restarted container starts from the image again, as a new writable layer gives it.
    `rm -rf ${quote(upper)} ${quote(work)}`,
    `mkdir -p ${quote(upper)} ${quote(work)} ${quote(root)}`,
    `mount -t overlay overlay -o ${quote(`lowerdir=${options.image.rootfs},upperdir=${upper},workdir=${work}`)} ${quote(root)}`,
    `mkdir -p ${await at('proc')} ${await at('dev')}`,
    `mount -t proc -o nosuid,nodev,noexec proc ${await at('proc')}`,
    `mount -t tmpfs -o nosuid,mode=0755 tmpfs ${await at('dev')}`,
  ]
  for (const device of ['null', 'zero', 'full', 'random', 'urandom', 'tty'])
    lines.push(
      `touch ${await at(`dev/${device}`)}`,
      `mount --bind /dev/${device} ${await at(`dev/${device}`)}`,
    )
  lines.push(
    `mkdir -p ${await at('dev/shm')}`,
    `mount -t tmpfs -o nosuid,nodev,noexec,mode=1777 shm ${await at('dev/shm')}`,
    `ln -s /proc/self/fd ${await at('dev/fd')}`,
  )
  for (const [fd, stream] of ['stdin', 'stdout', 'stderr'].entries())
    lines.push(`ln -s /proc/self/fd/${String(fd)} ${await at(`dev/${stream}`)}`)

  // The files the kubelet writes for every container (the network is the host's, so is its resolver).
  const kubeletDirectory = path.join(podDirectory, 'kubelet')
  await mkdir(kubeletDirectory)
  const etcFiles: [string, string][] = [
    ['hosts', `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.0.1\t${name}\n`],
    ['hostname', `${name}\n`],
    ['resolv.conf', await readFile('/etc/resolv.conf', 'utf8').catch(() => '')],
  ]
  const allMounts: Mount[] = []
  for (const [file, content] of etcFiles) {
    await writeFile(path.join(kubeletDirectory, file), content, {mode: 0o644})
    allMounts.push({
      source: path.join(kubeletDirectory, file),
      target: `/etc/${file}`,
      readOnly: false,
      file: true,
    })
  }
  // Parents before children, as the kubelet orders a container's mounts.
  allMounts.push(...[...mounts].sort((a, b) => a.target.split('/').length - b.target.split('/').length))
  for (const mount of allMounts) {
    const target = await at(mount.target)
    lines.push(
      mount.file ? `mkdir -p "$(dirname ${target})" && touch ${target}` : `mkdir -p ${target}`,
      `mount --bind ${quote(mount.source)} ${target}`,
    )
    if (mount.readOnly) lines.push(`mount -o remount,bind,ro ${target}`)
  }
  if (container.securityContext?.readOnlyRootFilesystem === true)
    lines.push(`mount -o remount,ro ${quote(root)}`)
  lines.push(`hostname ${quote(name)}`)

  const workingDirectory = container.workingDir ?? options.image.config.WorkingDir ?? '/'
  const noNewPrivileges =
    container.securityContext?.allowPrivilegeEscalation === false ? ['--no-new-privs'] : []
  const become = [
    ...['/usr/bin/env', '-i', ...[...environment].map(([key, value]) => `${key}=${value}`)],
    ...[
      '/usr/bin/setpriv',
      '--regid',
      String(user.gid),
      '--groups',
      user.groups.join(','),
      ...noNewPrivileges,
    ],
    ...[
      '/usr/bin/unshare',
      `--root=${root}`,
      `--wd=${workingDirectory}`,
      `--setuid=${String(user.uid)}`,
      '--',
    ],
    ...argv,
  ]
  lines.push(`exec ${become.map(quote).join(' ')}`)
  return `${lines.join('\n')}\n`
}

interface ContainerRun {
  child: ResultPromise
  exited: Promise<ContainerExit>
  timers: Set<NodeJS.Timeout>
  /** False once the run is being stopped: a probe in flight then reports to nobody. */
  probing: boolean
}

/** The container's runs (one, or more after restarts), its probes, and its stop. */
class PodProcess implements RunningPod {
  readonly events: string[] = []
  readonly name: string
  readonly podDirectory: string
  private text = ''
  private restarts = 0
  private current: ContainerRun | undefined
  private stopping = false
  private isReady = false
  private readonly readinessListeners = new Set<(exit?: ContainerExit) => void>()
  private restartTimer: NodeJS.Timeout | undefined
  private volumeSyncTimer: NodeJS.Timeout | undefined
  private volumeSyncPass: Promise<void> | undefined

  constructor(
    private readonly pod: PodContext,
    private readonly scriptPath: string,
  ) {
    this.name = pod.name
    this.podDirectory = pod.podDirectory
  }

  start(): this {
    const child = execa(
      '/usr/bin/unshare',
      [
        ...['--mount', '--propagation', 'private', '--pid', '--fork', '--uts', '--ipc'],
        // Should this process be killed, the container's init goes with it, and its namespace with that.
        '--kill-child=SIGKILL',
        ...['/bin/sh', this.scriptPath],
      ],
      {
        reject: false,
        stdin: 'ignore',
        all: true,
        buffer: false,
        extendEnv: false,
        env: {PATH: '/usr/sbin:/usr/bin:/sbin:/bin'},
      },
    )
    let partial = ''
    child.all?.on('data', (chunk: Buffer) => {
      const text = chunk.toString()
      this.text += text
      const lines = (partial + text).split('\n')
      partial = lines.pop() ?? ''
      for (const line of lines) this.pod.options.log?.(`[${this.name}] ${line}`)
    })
    const run: ContainerRun = {
      child,
      exited: child.then((result) => ({exitCode: result.exitCode, signal: result.signal})),
      timers: new Set(),
      probing: true,
    }
    this.current = run
    this.record('Started')
    void run.exited.then((exit) => this.exited(run, exit))
    this.startProbes(run)
    return this
  }

  output(): string {
    return this.text
  }

  restartCount(): number {
    return this.restarts
  }

  hostPid(): number | undefined {
    return containerInit(this.current?.child.pid)
  }

  ready(timeoutMs = 120_000): Promise<void> {
    if (this.isReady) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.readinessListeners.delete(listener)
        reject(
          new Error(
            `pod ${this.name} not ready after ${String(timeoutMs)} ms (${this.events.join('; ')}):\n${this.tail()}`,
          ),
        )
      }, timeoutMs)
      const listener = (exit?: ContainerExit) => {
        clearTimeout(timer)
        this.readinessListeners.delete(listener)
        if (exit === undefined) resolve()
        else
          reject(
            new Error(`pod ${this.name} exited before it was ready (${describeExit(exit)}):\n${this.tail()}`),
          )
      }
      this.readinessListeners.add(listener)
    })
  }

  /**
   * The kubelet's periodic sync of the volumes mounted as directories, every `periodMs` until stop(): each changed
   * volume is recorded as VolumeUpdated (the paths, never the content); one that cannot be projected (its object
   * gone or unreadable, a key missing) as FailedMount, its files kept, as the kubelet keeps them.
   */
  syncVolumes(volumes: WrittenVolume[], periodMs: number): void {
    if (volumes.length === 0) return
    const pass = async () => {
      for (const volume of volumes) {
        const name = volume.volume.name
        try {
          const changed = await syncVolume(this.pod, volume)
          if (changed.length > 0) this.record(`VolumeUpdated: volume ${name}: ${changed.join(', ')}`)
        } catch (error) {
          this.record(`FailedMount: volume ${name}: ${(error as Error).message.split('\n')[0] ?? ''}`)
        }
      }
    }
    const schedule = () => {
      this.volumeSyncTimer = setTimeout(() => {
        this.volumeSyncPass = pass().finally(() => {
          if (!this.stopping) schedule()
        })
      }, periodMs)
    }
    schedule()
  }

  async stop(gracePeriodSeconds = this.pod.spec.terminationGracePeriodSeconds ?? 30): Promise<ContainerExit> {
    this.stopping = true
    clearTimeout(this.restartTimer)
    clearTimeout(this.volumeSyncTimer)
    await this.volumeSyncPass
    const run = this.current
    const exit =
      run === undefined
        ? {exitCode: undefined, signal: undefined}
        : await this.terminate(run, gracePeriodSeconds)
    const mountinfo = await readFile('/proc/self/mountinfo', 'utf8')
    if (mountinfo.includes(this.podDirectory))
      throw new Error(`pod ${this.name} stopped, yet something is still mounted under ${this.podDirectory}`)
    const left = await processesRootedIn(path.join(this.podDirectory, 'root'))
    if (left.length > 0)
      throw new Error(`pod ${this.name} stopped, yet processes ${left.join(', ')} still run in its root`)
    return exit
  }

  /** Repeats of the last event are counted, as the kubelet aggregates them ("(x12)"). */
  private record(event: string): void {
    const last = this.events.at(-1)
    const repeated = last === undefined ? undefined : /^(.*?)(?: \(x(\d+)\))?$/.exec(last)
    if (repeated?.[1] === event)
      this.events[this.events.length - 1] = `${event} (x${String(Number(repeated[2] ?? 1) + 1)})`
    else this.events.push(event)
  }

  private tail(): string {
    return this.text.split('\n').slice(-40).join('\n')
  }

  /** SIGTERM to the container's PID 1, SIGKILL after the grace period; resolves once the run has exited. */
  private async terminate(run: ContainerRun, gracePeriodSeconds: number): Promise<ContainerExit> {
    this.clearProbes(run)
    const init = containerInit(run.child.pid)
    if (init === undefined) run.child.kill('SIGKILL')
    else signal(init, 'SIGTERM')
    let graceTimer: NodeJS.Timeout | undefined
    const graceOver = new Promise<'grace over'>((resolve) => {
      graceTimer = setTimeout(() => resolve('grace over'), gracePeriodSeconds * 1000)
    })
    const first = await Promise.race([run.exited, graceOver])
    clearTimeout(graceTimer)
    if (first === 'grace over') {
      this.record(`Killing: still running ${String(gracePeriodSeconds)} s after SIGTERM`)
      // SIGKILL to a PID namespace's init kills every process in it.
      if (init !== undefined) signal(init, 'SIGKILL')
      run.child.kill('SIGKILL')
    }
    return run.exited
  }

  private exited(run: ContainerRun, exit: ContainerExit): void {
    this.clearProbes(run)
    this.record(`Exited: ${describeExit(exit)}`)
    this.setReady(false, exit)
    if (this.stopping || this.current !== run) return
    // restartPolicy Always, the only one a Deployment takes; the kubelet's back-off doubles up to 5 minutes.
    const backoff = Math.min((this.pod.options.restartBackoffMs ?? 10_000) * 2 ** this.restarts, 300_000)
    this.record(`BackOff: restarting in ${String(backoff)} ms`)
    this.restartTimer = setTimeout(() => {
      this.restarts += 1
      this.start()
    }, backoff)
  }

  private setReady(ready: boolean, exit?: ContainerExit): void {
    this.isReady = ready
    if (ready || exit !== undefined) for (const listener of [...this.readinessListeners]) listener(exit)
  }

  private clearProbes(run: ContainerRun): void {
    run.probing = false
    for (const timer of run.timers) clearTimeout(timer)
    run.timers.clear()
  }

  /** The startup probe first; then liveness and readiness, each on its own period, as the kubelet runs them. */
  private startProbes(run: ContainerRun): void {
    const {startupProbe, readinessProbe, livenessProbe} = this.pod.container
    const afterStartup = () => {
      if (readinessProbe === undefined) this.setReady(true)
      else
        this.probeLoop(run, readinessProbe, 'Readiness', {
          onSuccess: () => this.setReady(true),
          onFailure: () => (this.isReady = false),
        })
      if (livenessProbe !== undefined)
        this.probeLoop(run, livenessProbe, 'Liveness', {onFailure: () => this.kill(run, 'Liveness')})
    }
    if (startupProbe === undefined) afterStartup()
    else
      this.probeLoop(run, startupProbe, 'Startup', {
        onSuccess: afterStartup,
        onFailure: () => this.kill(run, 'Startup'),
        once: true,
      })
  }

  private kill(run: ContainerRun, probe: string): void {
    this.record(`Killing: ${probe} probe failed, the container will be restarted`)
    void this.terminate(run, this.pod.spec.terminationGracePeriodSeconds ?? 30)
  }

  private probeLoop(
    run: ContainerRun,
    probe: V1Probe,
    kind: string,
    on: {onSuccess?: () => void; onFailure?: () => void; once?: boolean},
  ): void {
    const successThreshold = probe.successThreshold ?? 1
    const failureThreshold = probe.failureThreshold ?? 3
    let successes = 0
    let failures = 0
    const schedule = (delayMs: number) => {
      const timer = setTimeout(() => {
        run.timers.delete(timer)
        void probeOnce(this.pod.container, probe).then((failure) => {
          if (!run.probing) return
          if (failure === undefined) {
            successes += 1
            failures = 0
            if (successes >= successThreshold) {
              on.onSuccess?.()
              if (on.once === true) return
            }
          } else {
            failures += 1
            successes = 0
            this.record(`Unhealthy: ${kind} probe failed: ${failure}`)
            if (failures >= failureThreshold) {
              failures = 0
              on.onFailure?.()
              if (kind !== 'Readiness') return
            }
          }
          if (run.probing) schedule((probe.periodSeconds ?? 10) * 1000)
        })
      }, delayMs)
      run.timers.add(timer)
    }
    schedule((probe.initialDelaySeconds ?? 0) * 1000)
  }
}

function describeExit(exit: ContainerExit): string {
  return exit.signal === undefined ? `exit code ${String(exit.exitCode)}` : `signal ${exit.signal}`
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name)
  } catch {
    // Already gone.
  }
}

/** The host's PID of the container's init: the one child `unshare --fork` made (PID 1 inside). */
function containerInit(unsharePid: number | undefined): number | undefined {
  if (unsharePid === undefined) return undefined
  try {
    const children = readFileSync(
      `/proc/${String(unsharePid)}/task/${String(unsharePid)}/children`,
      'utf8',
    ).trim()
    return children === '' ? undefined : Number(children.split(' ')[0])
  } catch {
    return undefined
  }
}

/** The host's processes whose root directory is `root` (or under it): a container's, by what chroot left. */
async function processesRootedIn(root: string): Promise<number[]> {
  const pids = (await readdir('/proc')).filter((entry) => /^\d+$/.test(entry))
  const rooted: number[] = []
  for (const pid of pids) {
    const processRoot = await readlink(`/proc/${pid}/root`).catch(() => undefined)
    if (processRoot !== undefined && (processRoot === root || processRoot.startsWith(`${root}/`)))
      rooted.push(Number(pid))
  }
  return rooted
}

/** One probe: undefined when it passes, else why it failed. */
async function probeOnce(container: V1Container, probe: V1Probe): Promise<string | undefined> {
  const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000
  const port = (value: number | string): number => {
    if (typeof value === 'number' || /^\d+$/.test(value)) return Number(value)
    const named = container.ports?.find((candidate) => candidate.name === value)
    if (named === undefined) throw new Error(`container ${container.name} has no port named ${value}`)
    return named.containerPort
  }
  if (probe.httpGet !== undefined) {
    const {httpGet} = probe
    const client = httpGet.scheme === 'HTTPS' ? https : http
    return new Promise((resolve) => {
      const request = client.get(
        {
          host: httpGet.host ?? '127.0.0.1',
          port: port(httpGet.port),
          path: httpGet.path ?? '/',
          headers: Object.fromEntries(
            (httpGet.httpHeaders ?? []).map((header) => [header.name, header.value]),
          ),
          agent: false,
          // The kubelet does not verify a probe's certificate.
          rejectUnauthorized: false,
          timeout: timeoutMs,
        },
        (response) => {
          response.resume()
          const status = response.statusCode ?? 0
          resolve(
            status >= 200 && status < 400 ? undefined : `HTTP ${String(status)} from ${httpGet.path ?? '/'}`,
          )
        },
      )
      request.on('timeout', () => request.destroy(new Error(`no answer in ${String(timeoutMs)} ms`)))
      request.on('error', (error) => resolve(error.message))
    })
  }
  const tcpPort = port(probe.tcpSocket?.port ?? 0)
  return new Promise((resolve) => {
    const socket = net.connect({
      host: probe.tcpSocket?.host ?? '127.0.0.1',
      port: tcpPort,
      timeout: timeoutMs,
    })
    socket.on('connect', () => {
      socket.destroy()
      resolve(undefined)
    })
    socket.on('timeout', () => socket.destroy(new Error(`no connection in ${String(timeoutMs)} ms`)))
    socket.on('error', (error) => resolve(error.message))
  })
}
