import assert from 'node:assert/strict'
import {readFile} from 'node:fs/promises'
import path from 'node:path'

import {
  CoordinationV1Api,
  PatchStrategy,
  setHeaderOptions,
  type KubernetesObject,
  type V1Deployment,
} from '@kubernetes/client-node'
import {execa} from 'execa'
import {dump, loadAll} from 'js-yaml'

import {buildImage} from '../../image/build.js'
import {unpackCached, type UnpackedImage} from '../../image/unpack.js'
import type {FixtureName} from '../../src/kubesphere-standin/fixtures.js'
import {
  createCertificateAuthority,
  issueCertificate,
  privateKeyFingerprint,
} from '../../src/pki/certificates.js'
import type {ProxyInstallResult} from '../../src/proxy-install/install.js'
import type {ProxyUninstallResult} from '../../src/proxy-install/uninstall.js'
import type {ProcessOutcome} from '../helpers/ksctl-process.js'
import {until} from '../helpers/ksctl-running.js'
import {objectIdentity, RENDERED_PROXY_OBJECTS} from '../helpers/proxy-install-objects.js'
import {runPod, type RunningPod} from '../helpers/pod-runner.js'
import {tempDir} from '../helpers/temp-dir.js'
import {denyWrites} from '../testbed/admission.js'
import {freeClusterPorts, freePort} from '../testbed/http.js'
import {adminApis, resetCluster} from '../testbed/seed.js'
import {run} from './cluster-state.js'
import {testBed} from './hooks.js'

const NAMESPACE = 'kubesphere-system'
const PROXY = 'ksctl-tower-proxy'
const KSCTL_PODS = {'app.kubernetes.io/name': PROXY}
const TOWER_PODS = {app: 'tower', 'app.kubernetes.io/name': 'tower'}
const clusterApi = {group: 'cluster.kubesphere.io', version: 'v1alpha1', plural: 'clusters'}

type Apis = ReturnType<typeof adminApis>
const hostApis = (): Apis => adminApis(testBed().kubeconfigPath, 'host')

/**
 * resourceVersion of every object the install or uninstall may touch on the host, Leases and Endpoints included:
 * equal snapshots mean nothing was written.
 */
async function hostVersions(): Promise<Record<string, string>> {
  const apis = hostApis()
  const versions: Record<string, string> = {}
  const note = (kind: string, items: KubernetesObject[]) => {
    for (const item of items)
      versions[`${kind}/${item.metadata?.namespace ?? ''}/${item.metadata?.name ?? ''}`] =
        item.metadata?.resourceVersion ?? ''
  }
  for (const namespace of [NAMESPACE, 'default']) {
    note('configmap', (await apis.core.listNamespacedConfigMap({namespace})).items)
    note('secret', (await apis.core.listNamespacedSecret({namespace})).items)
    note('service', (await apis.core.listNamespacedService({namespace})).items)
    note('endpoints', (await apis.core.listNamespacedEndpoints({namespace})).items)
    note('serviceaccount', (await apis.core.listNamespacedServiceAccount({namespace})).items)
    note('deployment', (await apis.apps.listNamespacedDeployment({namespace})).items)
    note('role', (await apis.rbac.listNamespacedRole({namespace})).items)
    note('rolebinding', (await apis.rbac.listNamespacedRoleBinding({namespace})).items)
    note('lease', (await apis.config.makeApiClient(CoordinationV1Api).listNamespacedLease({namespace})).items)
  }
  note('clusterrole', (await apis.rbac.listClusterRole()).items)
  note('clusterrolebinding', (await apis.rbac.listClusterRoleBinding()).items)
  note(
    'cluster',
    ((await apis.custom.listClusterCustomObject(clusterApi)) as {items: KubernetesObject[]}).items,
  )
  return versions
}

/** An object as the undo must restore it: everything but what the API server manages in its metadata. */
function restorable(object: KubernetesObject | undefined): unknown {
  if (object === undefined) return undefined
  // As JSON: the client library's model classes and Dates would differ from the same data read another way.
  const copy = JSON.parse(JSON.stringify(object)) as {metadata: Record<string, unknown>}
  for (const key of ['managedFields', 'resourceVersion', 'generation']) delete copy.metadata[key]
  return copy
}

/** Tower's objects on the host, field by field, and which of ksctl's proxy objects exist. */
async function towerObjects(): Promise<{tower: unknown; service: unknown; clusterService: unknown}> {
  const apis = hostApis()
  return {
    tower: restorable(await apis.apps.readNamespacedDeployment({name: 'tower', namespace: NAMESPACE})),
    service: restorable(await apis.core.readNamespacedService({name: 'tower', namespace: NAMESPACE})),
    clusterService: restorable(
      await apis.core.readNamespacedService({name: 'mc-member1', namespace: NAMESPACE}),
    ),
  }
}

async function ksctlObjects(): Promise<string[]> {
  const apis = hostApis()
  const exists = async (what: string, read: () => Promise<unknown>) =>
    (await read().then(
      () => true,
      () => false,
    ))
      ? [what]
      : []
  return [
    ...(await exists('serviceaccount', () =>
      apis.core.readNamespacedServiceAccount({name: PROXY, namespace: NAMESPACE}),
    )),
    ...(await exists('clusterrole', () => apis.rbac.readClusterRole({name: PROXY}))),
    ...(await exists('clusterrolebinding', () => apis.rbac.readClusterRoleBinding({name: PROXY}))),
    ...(await exists('role', () => apis.rbac.readNamespacedRole({name: PROXY, namespace: NAMESPACE}))),
    ...(await exists('rolebinding', () =>
      apis.rbac.readNamespacedRoleBinding({name: PROXY, namespace: NAMESPACE}),
    )),
    ...(await exists('events role', () =>
      apis.rbac.readNamespacedRole({name: 'ksctl-tower-proxy-events', namespace: 'default'}),
    )),
    ...(await exists('events rolebinding', () =>
      apis.rbac.readNamespacedRoleBinding({name: 'ksctl-tower-proxy-events', namespace: 'default'}),
    )),
    ...(await exists('deployment', () =>
      apis.apps.readNamespacedDeployment({name: PROXY, namespace: NAMESPACE}),
    )),
    ...(await exists('ca secret', () =>
      apis.core.readNamespacedSecret({name: 'ksctl-tower-ca', namespace: NAMESPACE}),
    )),
    ...(await exists('serving secret', () =>
      apis.core.readNamespacedSecret({name: 'ksctl-tower-serving', namespace: NAMESPACE}),
    )),
    ...(await exists('record', () =>
      apis.core.readNamespacedConfigMap({name: 'ksctl-tower-install', namespace: NAMESPACE}),
    )),
  ]
}

const allKsctlObjects = [
  'serviceaccount',
  'clusterrole',
  'clusterrolebinding',
  'role',
  'rolebinding',
  'events role',
  'events rolebinding',
  'deployment',
  'ca secret',
  'serving secret',
  'record',
]

/** RBAC objects live outside kubesphere-system's contents, which resetCluster clears: a failed run may leave them. */
async function removeLeftoverRbac(): Promise<void> {
  const apis = hostApis()
  const quietly = (request: Promise<unknown>) => request.catch(() => undefined)
  await quietly(apis.rbac.deleteClusterRole({name: PROXY}))
  await quietly(apis.rbac.deleteClusterRoleBinding({name: PROXY}))
  await quietly(apis.rbac.deleteNamespacedRole({name: PROXY, namespace: NAMESPACE}))
  await quietly(apis.rbac.deleteNamespacedRoleBinding({name: PROXY, namespace: NAMESPACE}))
  await quietly(apis.rbac.deleteNamespacedRole({name: 'ksctl-tower-proxy-events', namespace: 'default'}))
  await quietly(
    apis.rbac.deleteNamespacedRoleBinding({name: 'ksctl-tower-proxy-events', namespace: 'default'}),
  )
}

/**
 * What Tower leaves on a host with one proxy member that it initialized and whose agent never connected: the Cluster
 * (token, port in 6000-7000, endpoints, Initialized) and Service mc-member1 in Tower's shape (TOWER v0.2.1
 * pkg/proxy/proxy.go addCluster).
 */
async function seedTowerMember(apis: Apis): Promise<void> {
  const service = await apis.core.createNamespacedService({
    namespace: NAMESPACE,
    body: {
      metadata: {name: 'mc-member1', labels: {app: 'mc-member1', 'app.kubernetes.io/name': 'mc-member1'}},
      spec: {
        type: 'ClusterIP',
        selector: TOWER_PODS,
        ports: [
          {name: 'kubernetes', protocol: 'TCP', port: 6443, targetPort: 6123},
          {name: 'kubesphere', protocol: 'TCP', port: 80, targetPort: 16123},
        ],
      },
    },
  })
  const clusterIp = service.spec?.clusterIP ?? ''
  await apis.custom.createClusterCustomObject({
    ...clusterApi,
    body: {
      apiVersion: 'cluster.kubesphere.io/v1alpha1',
      kind: 'Cluster',
      metadata: {name: 'member1'},
      spec: {
        joinFederation: true,
        connection: {
          type: 'proxy',
          token: 'a'.repeat(64),
          kubernetesAPIServerPort: 6123,
          kubesphereAPIServerPort: 16123,
          kubernetesAPIEndpoint: `https://${clusterIp}:6443`,
          kubesphereAPIEndpoint: `http://${clusterIp}:80`,
        },
      },
    },
  })
}

async function proxyCluster(apis: Apis, name: string, spec: Record<string, unknown> = {}): Promise<void> {
  await apis.custom.createClusterCustomObject({
    ...clusterApi,
    body: {
      apiVersion: 'cluster.kubesphere.io/v1alpha1',
      kind: 'Cluster',
      metadata: {name},
      spec: {joinFederation: true, connection: {type: 'proxy', ...spec}},
    },
  })
}

/** A kubeconfig as Tower issues one into a Cluster: a client certificate of Tower's own CA (base64, as stored). */
async function towerIssuedKubeconfig(server: string): Promise<string> {
  const ca = await createCertificateAuthority({commonName: 'kubesphere', validityDays: 2})
  const client = await issueCertificate(ca, {
    commonName: 'kubesphere',
    organizations: ['system:masters'],
    usage: 'client',
  })
  const base64 = (text: string) => Buffer.from(text).toString('base64')
  return base64(
    dump({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{name: 'member', cluster: {server, 'certificate-authority-data': base64(ca.certPem)}}],
      users: [
        {
          name: 'kubesphere',
          user: {'client-certificate-data': base64(client.certPem), 'client-key-data': base64(client.keyPem)},
        },
      ],
      contexts: [{name: 'member', context: {cluster: 'member', user: 'kubesphere'}}],
      'current-context': 'member',
    }),
  )
}

/** A serving key made as docs/deployment.md says, for an install that must not print keys (-o yaml); its key. */
async function handMadeServingSecret(): Promise<string> {
  const keyFile = path.join(tempDir('ksctl-serving-key-'), 'serving.key')
  await execa('openssl', [
    'genpkey',
    '-algorithm',
    'EC',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-out',
    keyFile,
  ])
  await execa('/usr/bin/kubectl', [
    ...['--kubeconfig', testBed().kubeconfigPath, '--context', 'host', '-n', NAMESPACE],
    ...['create', 'secret', 'generic', 'ksctl-tower-serving', '--type', 'kubernetes.io/tls'],
    ...['--from-file', `tls.key=${keyFile}`, '--from-literal', 'tls.crt='],
  ])
  return readFile(keyFile, 'utf8')
}

// The type parameter only names what the caller expects the command's --json document to be.
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters
function succeeded<T>(outcome: ProcessOutcome): T {
  assert.equal(outcome.exitCode, 0, outcome.stderr)
  return JSON.parse(outcome.stdout) as T
}

/**
 * The rendered Deployment on this machine: the pod runner shares the host's network, so the container gets free
 * ports of this machine where a pod would have its own network (the agents', front-end and metrics ports, and the
 * range of the clusters' own ports); nothing else of the Deployment changes.
 */
function onFreePorts(
  deployment: V1Deployment,
  ports: {agents: number; frontEnd: number; metrics: number; clusterPorts: string},
): V1Deployment {
  const copy = structuredClone(deployment)
  const container = copy.spec?.template.spec?.containers[0]
  if (container === undefined) throw new Error('the rendered Deployment has no container')
  const local = (port: number) => `127.0.0.1:${String(port)}`
  const args = [...(container.args ?? [])]
  const replace = (flag: string, value: string) => {
    const at = args.indexOf(flag)
    assert.ok(at >= 0, `the rendered proxy has ${flag}`)
    args[at + 1] = value
  }
  replace('--listen', local(ports.agents))
  replace('--front-end', local(ports.frontEnd))
  replace('--metrics-address', local(ports.metrics))
  container.args = [...args, '--cluster-ports', ports.clusterPorts]
  container.ports = container.ports?.map((port) =>
    port.name === 'metrics' ? {...port, containerPort: ports.metrics} : port,
  )
  return copy
}

const editions: {edition: string; fixture: FixtureName}[] = [
  {edition: '3.4', fixture: 'ks34-host'},
  {edition: '4.1', fixture: 'ks41-host'},
]

describe('ksctl proxy install and uninstall', function () {
  this.timeout(600_000)
  let image: UnpackedImage

  before(async function () {
    // A warm build redoes only ksctl's layer (seconds); `npm run image -- --unpack` beforehand makes it warm.
    this.timeout(600_000)
    image = await unpackCached((await buildImage()).archive)
  })

  for (const {edition, fixture} of editions) {
    describe(`on a KubeSphere ${edition} host`, function () {
      this.timeout(300_000)
      const install = ['proxy', 'install', '--context', 'host', '--image', 'ksctl:0.1.0']
      const uninstall = ['proxy', 'uninstall', '--context', 'host']
      const pods: RunningPod[] = []
      const cleanups: (() => Promise<unknown>)[] = []

      beforeEach(async () => {
        await removeLeftoverRbac()
        await resetCluster(testBed().kubeconfigPath, 'host', fixture)
        await seedTowerMember(hostApis())
      })

      afterEach(async () => {
        for (const pod of pods.splice(0)) await pod.stop(5)
        for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined)
      })

      it("refuses, changing nothing: a member on Tower's agent it cannot reach, proxy objects it did not make, and a failure at the last step (every step before it undone)", async () => {
        const apis = hostApis()
        await proxyCluster(apis, 'legacy', {
          kubeconfig: await towerIssuedKubeconfig('https://10.96.0.99:6443'),
        })
        let before = await hostVersions()
        const onTowerAgent = await run([...install, '--yes'])
        assert.equal(onTowerAgent.exitCode, 1, onTowerAgent.stderr)
        // Its tunnel (the Cluster's kubeconfig) leads nowhere: the member cannot be given ksctl's agent, so the
        // install switches nothing and undoes what it made.
        // (On 3.4 the member is tried and fails; on 4.1 the fixture publishes no proxy address, so no agent could
        // be rendered for any member, which stops the move before it starts.)
        assert.match(
          onTowerAgent.stderr,
          /could not move members to ksctl's agent: (could not give ksctl's agent to legacy|service kubesphere-system\/tower has no public address)/,
        )
        assert.match(onTowerAgent.stderr, /every change before it was undone, so nothing was changed/)
        assert.deepEqual(await hostVersions(), before)
        await apis.custom.deleteClusterCustomObject({...clusterApi, name: 'legacy'})

        await apis.core.createNamespacedServiceAccount({
          namespace: NAMESPACE,
          body: {metadata: {name: PROXY}},
        })
        before = await hostVersions()
        const stray = await run([...install, '--yes'])
        assert.equal(stray.exitCode, 1, stray.stderr)
        assert.match(
          stray.stderr,
          /serviceaccounts kubesphere-system\/ksctl-tower-proxy already exist\(s\) in context "host", but ksctl proxy install did not make them/,
        )
        assert.match(
          stray.stderr,
          /kubectl --context host -n kubesphere-system delete serviceaccount ksctl-tower-proxy/,
        )
        assert.deepEqual(await hostVersions(), before)
        await apis.core.deleteNamespacedServiceAccount({name: PROXY, namespace: NAMESPACE})

        const tower = await towerObjects()
        const lift = await denyWrites(
          testBed().kubeconfigPath,
          'host',
          'deny-tower-service-update',
          {group: '', resource: 'services', operations: ['UPDATE'], names: ['tower']},
          async () => {
            const service = await apis.core.readNamespacedService({name: 'tower', namespace: NAMESPACE})
            return apis.core
              .replaceNamespacedService({name: 'tower', namespace: NAMESPACE, body: service, dryRun: 'All'})
              .then(
                () => false,
                () => true,
              )
          },
        )
        cleanups.push(lift)
        const failed = await run([...install, '--yes'])
        assert.equal(failed.exitCode, 1, failed.stderr)
        assert.match(
          failed.stderr,
          /could not point the tower Service at ksctl's proxy, keeping its name, ports and address: .*refused by the test; every change before it was undone, so nothing was changed/,
        )
        assert.deepEqual(await towerObjects(), tower, 'Tower, its Service and mc-member1 as they were')
        assert.deepEqual(await ksctlObjects(), [])
      })

      it('--dry-run (client and server) and -o yaml change nothing; -o yaml prints the objects to apply, without the Secrets', async () => {
        const before = await hostVersions()
        const dry = await run([...install, '--dry-run'])
        assert.equal(dry.exitCode, 0, dry.stderr)
        assert.match(
          dry.stdout,
          /would change host: services kubesphere-system\/tower \(point the tower Service at ksctl's proxy/,
        )
        assert.match(
          dry.stdout,
          /would change host: deployments kubesphere-system\/tower \(scale Tower's proxy to 0 replicas\)/,
        )
        assert.match(dry.stdout, /^-\s+replicas: 1$/m)
        assert.match(dry.stdout, /dry run: nothing was changed/)
        assert.doesNotMatch(dry.stdout + dry.stderr, /BEGIN (EC )?PRIVATE KEY/)
        assert.deepEqual(await hostVersions(), before)

        const server = succeeded<ProxyInstallResult>(await run([...install, '--dry-run=server', '--json']))
        assert.ok(server.changes.some((change) => change.changed))
        assert.deepEqual(await hostVersions(), before)

        const yaml = await run([...install, '-o', 'yaml'])
        assert.equal(yaml.exitCode, 0, yaml.stderr)
        const objects = loadAll(yaml.stdout) as {
          kind: string
          metadata: {name: string; namespace?: string}
          spec?: Record<string, unknown>
        }[]
        assert.deepEqual(objects.map(objectIdentity), [
          ...RENDERED_PROXY_OBJECTS,
          'Service kubesphere-system/tower',
          'Deployment kubesphere-system/tower',
        ])
        const [towerService, towerDeployment] = objects.slice(RENDERED_PROXY_OBJECTS.length)
        assert.deepEqual(towerService?.spec?.selector, KSCTL_PODS)
        assert.equal(towerDeployment?.spec?.replicas, 0)
        assert.match(
          yaml.stderr,
          /not printed: secrets kubesphere-system\/ksctl-tower-ca and kubesphere-system\/ksctl-tower-serving: they hold private keys/,
        )
        assert.deepEqual(await hostVersions(), before)
      })

      it('installs; the proxy runs from its rendered Deployment with only its own RBAC, serves the Clusters and keeps its pin across a restart; uninstall restores every object exactly', async () => {
        const apis = hostApis()
        const tower = await towerObjects()
        const towerPorts = (tower.service as {spec: {ports: unknown}}).spec.ports
        // On 4.1 the serving key is made by hand first, as docs/deployment.md tells a GitOps user to (openssl, and a
        // Secret with an empty certificate): the install keeps it, the proxy certifies it, uninstall leaves it.
        const handMadeKey = edition === '4.1' ? await handMadeServingSecret() : undefined

        const installOutcome = await run([...install, '--yes', '--json'])
        const installed = succeeded<ProxyInstallResult>(installOutcome)
        assert.equal(installed.reinstall, false)
        // The keys the install made are in their Secrets, and in no output.
        for (const name of ['ksctl-tower-ca', 'ksctl-tower-serving']) {
          const key = Buffer.from(
            (await apis.core.readNamespacedSecret({name, namespace: NAMESPACE})).data?.['tls.key'] ?? '',
            'base64',
          ).toString()
          assert.match(key, /PRIVATE KEY/)
          const body = key.split('\n').slice(1, 2).join('')
          assert.ok(
            !(installOutcome.stdout + installOutcome.stderr).includes(body),
            `${name}'s key in the output`,
          )
        }
        assert.doesNotMatch(installOutcome.stdout + installOutcome.stderr, /PRIVATE KEY/)
        assert.match(installed.servingPin ?? '', /^sha256:[0-9a-f]{64}$/)
        if (handMadeKey !== undefined) assert.equal(installed.servingPin, privateKeyFingerprint(handMadeKey))
        assert.deepEqual((await ksctlObjects()).sort(), [...allKsctlObjects].sort())
        const service = await apis.core.readNamespacedService({name: 'tower', namespace: NAMESPACE})
        assert.deepEqual(service.spec?.selector, KSCTL_PODS)
        assert.deepEqual(
          JSON.parse(JSON.stringify(service.spec?.ports)),
          towerPorts,
          'the tower Service keeps its ports',
        )
        assert.equal(
          (await apis.apps.readNamespacedDeployment({name: 'tower', namespace: NAMESPACE})).spec?.replicas,
          0,
        )

        // Run again: nothing to repair, nothing written.
        let versions = await hostVersions()
        const again = succeeded<ProxyInstallResult>(await run([...install, '--yes', '--json']))
        assert.equal(again.reinstall, true)
        assert.deepEqual(
          again.changes.filter((change) => change.changed).map((change) => change.summary),
          [],
        )
        assert.deepEqual(await hostVersions(), versions)

        // What a re-run of ks-installer's multicluster role (`kubectl apply -f tower.yaml`) or a Helm upgrade of the
        // tower extension sends (docs/deployment.md): the manifest's replicas and selector, as a strategic merge patch.
        const record = await apis.core.readNamespacedConfigMap({
          name: 'ksctl-tower-install',
          namespace: NAMESPACE,
        })
        const strategic = setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch)
        await apis.apps.patchNamespacedDeployment(
          {name: 'tower', namespace: NAMESPACE, body: {spec: {replicas: 1}}},
          strategic,
        )
        await apis.core.patchNamespacedService(
          {name: 'tower', namespace: NAMESPACE, body: {spec: {selector: {app: 'tower'}}}},
          strategic,
        )
        assert.deepEqual(
          (await apis.core.readNamespacedService({name: 'tower', namespace: NAMESPACE})).spec?.selector,
          {app: 'tower', ...KSCTL_PODS},
          'the selector is merged key by key: it matches neither proxy',
        )
        const drift = await run([...install, '--dry-run'])
        assert.match(
          drift.stdout,
          /would change host: deployments kubesphere-system\/tower \(scale Tower's proxy to 0/,
        )
        assert.match(
          drift.stdout,
          /would change host: services kubesphere-system\/tower \(point the tower Service/,
        )
        const repaired = succeeded<ProxyInstallResult>(await run([...install, '--yes', '--json']))
        assert.deepEqual(
          repaired.changes.filter((change) => change.changed).map((change) => change.object.resource),
          ['deployments', 'services'],
        )
        assert.deepEqual(
          (await apis.core.readNamespacedService({name: 'tower', namespace: NAMESPACE})).spec?.selector,
          KSCTL_PODS,
        )
        assert.equal(
          (await apis.core.readNamespacedConfigMap({name: 'ksctl-tower-install', namespace: NAMESPACE}))
            .metadata?.resourceVersion,
          record.metadata?.resourceVersion,
          'the record still says what was there before the first install',
        )

        // The proxy as its Deployment says, with its ServiceAccount's token: only the RBAC the install rendered.
        const deployment = await apis.apps.readNamespacedDeployment({name: PROXY, namespace: NAMESPACE})
        const token = (
          await execa('/usr/bin/kubectl', [
            ...['--kubeconfig', testBed().kubeconfigPath, '--context', 'host', '-n', NAMESPACE],
            ...['create', 'token', PROXY, '--duration', '1h'],
          ])
        ).stdout.trim()
        const ports = {
          agents: await freePort(),
          frontEnd: await freePort(),
          metrics: await freePort(),
          clusterPorts: (await freeClusterPorts(4)).flag,
        }
        const log = (line: string) =>
          process.env.KSCTL_TEST_POD_LOG === '1' ? console.error(line) : undefined
        const startProxy = async () => {
          const pod = await runPod({
            deployment: onFreePorts(deployment, ports),
            image,
            serviceAccount: {token, caCert: testBed().caCertPem, namespace: NAMESPACE},
            apiServer: {host: '127.0.0.1', port: testBed().clusters.host.port},
            log,
          })
          pods.push(pod)
          await pod.ready()
          return pod
        }
        const startedPin = (pod: RunningPod) =>
          pod
            .output()
            .split('\n')
            .filter((line) => line.startsWith('{'))
            .map((line) => JSON.parse(line) as {msg?: string; servingPin?: string})
            .find((line) => line.msg === 'tower proxy started')?.servingPin
        const proxy = await startProxy()
        assert.equal(
          startedPin(proxy),
          installed.servingPin,
          'the proxy serves with the key the install made',
        )

        const clusterService = (name: string) =>
          apis.core.readNamespacedService({name: `mc-${name}`, namespace: NAMESPACE}).catch(() => undefined)
        const cluster = async (name: string) =>
          (await apis.custom.getClusterCustomObject({...clusterApi, name})) as {
            spec: {connection: {token?: string; kubernetesAPIEndpoint?: string}}
            status?: {conditions?: {type: string; status: string}[]}
          }
        await until(
          async () =>
            JSON.stringify((await clusterService('member1'))?.spec?.selector) === JSON.stringify(KSCTL_PODS),
          "Tower's Service mc-member1 to lead to ksctl's proxy",
          {timeoutMs: 30_000, output: () => proxy.output()},
        )
        await proxyCluster(apis, 'member2')
        await until(
          async () => {
            const member2 = await cluster('member2')
            const initialized = member2.status?.conditions?.some(
              (c) => c.type === 'Initialized' && c.status === 'True',
            )
            const service2 = await clusterService('member2')
            return (
              initialized === true &&
              /^[0-9a-f]{64}$/.test(member2.spec.connection.token ?? '') &&
              member2.spec.connection.kubernetesAPIEndpoint ===
                `https://${service2?.spec?.clusterIP ?? ''}:6443` &&
              JSON.stringify(service2?.spec?.selector) === JSON.stringify(KSCTL_PODS)
            )
          },
          'the proxy to initialize a new Cluster (token, ports, Service mc-member2, endpoints, Initialized)',
          {timeoutMs: 30_000, output: () => proxy.output()},
        )
        await proxyCluster(apis, 'member3')
        await until(async () => (await clusterService('member3')) !== undefined, 'Service mc-member3', {
          timeoutMs: 30_000,
          output: () => proxy.output(),
        })
        await apis.custom.deleteClusterCustomObject({...clusterApi, name: 'member3'})
        await until(
          async () => (await clusterService('member3')) === undefined,
          'the proxy to remove Service mc-member3',
          {
            timeoutMs: 30_000,
            output: () => proxy.output(),
          },
        )
        // A Cluster it cannot serve (Service mc-NAME would be 65 characters, over a Service name's 63) gets a
        // Warning Event, which the proxy writes in namespace default.
        const tooLong = `long-${'x'.repeat(57)}`
        await proxyCluster(apis, tooLong)
        await until(
          async () =>
            (await apis.core.listNamespacedEvent({namespace: 'default'})).items.some(
              (event) => event.involvedObject.name === tooLong && event.reason === 'ReconcileFailed',
            ),
          'a Warning Event on the Cluster the proxy cannot serve',
          {timeoutMs: 30_000, output: () => proxy.output()},
        )
        await apis.custom.deleteClusterCustomObject({...clusterApi, name: tooLong})
        assert.doesNotMatch(proxy.output(), /forbidden/i, 'its RBAC is all the proxy needed')
        // ...and no more than that.
        const canI = async (verb: string, what: string, namespace = NAMESPACE) =>
          (
            await execa(
              '/usr/bin/kubectl',
              [
                ...['--kubeconfig', testBed().kubeconfigPath, '--context', 'host', '-n', namespace],
                ...['auth', 'can-i', verb, what, '--as', `system:serviceaccount:${NAMESPACE}:${PROXY}`],
              ],
              {reject: false},
            )
          ).stdout.trim()
        assert.equal(await canI('create', 'secrets'), 'no')
        assert.equal(await canI('get', 'secrets/kubesphere-secret'), 'no')
        assert.equal(await canI('update', 'secrets/ksctl-tower-ca'), 'no')
        assert.equal(await canI('patch', 'deployments/tower'), 'no')
        assert.equal(await canI('list', 'services', 'default'), 'no')
        assert.equal(await canI('patch', 'clusters.cluster.kubesphere.io/member2'), 'yes')

        // A restart (a new pod of the same Deployment) serves with the same key: an agent's --proxy-pin holds.
        await proxy.stop()
        pods.splice(pods.indexOf(proxy), 1)
        const restarted = await startProxy()
        assert.equal(startedPin(restarted), installed.servingPin)
        // The Deployment's deletion stops its pod; the pod runner has no kubelet to see it, so the test stops it first.
        await restarted.stop()
        pods.splice(pods.indexOf(restarted), 1)

        versions = await hostVersions()
        const dryUninstall = await run([...uninstall, '--dry-run'])
        assert.equal(dryUninstall.exitCode, 0, dryUninstall.stderr)
        assert.match(
          dryUninstall.stdout,
          /would change host: services kubesphere-system\/tower \(point the tower Service at Tower's proxy again\)/,
        )
        assert.deepEqual(await hostVersions(), versions)

        const uninstalled = succeeded<ProxyUninstallResult>(await run([...uninstall, '--yes', '--json']))
        assert.equal(uninstalled.installed, true)
        assert.deepEqual(
          await towerObjects(),
          tower,
          'Tower, its Service and mc-member1 exactly as they were',
        )
        assert.deepEqual(await ksctlObjects(), handMadeKey === undefined ? [] : ['serving secret'])
        // The Service ksctl's proxy made for a later Cluster, in Tower's form: Tower never looks at it again.
        const member2 = await clusterService('member2')
        assert.deepEqual(member2?.spec?.selector, TOWER_PODS)
        assert.deepEqual(member2?.metadata?.labels, {
          app: 'mc-member2',
          'app.kubernetes.io/name': 'mc-member2',
        })

        const nothing = succeeded<ProxyUninstallResult>(await run([...uninstall, '--yes', '--json']))
        assert.equal(nothing.installed, false)
      })
    })
  }
})
