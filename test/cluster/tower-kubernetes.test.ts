import assert from 'node:assert/strict'
import {writeFile} from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'

import {PatchStrategy, setHeaderOptions} from '@kubernetes/client-node'
import {execa, type ResultPromise} from 'execa'

import {ClusterClients} from '../../src/k8s/clients.js'
import {ClusterResource} from '../../src/k8s/resources.js'
import {conditionOf, type KubeSphereCluster} from '../../src/kubesphere/cluster-object.js'
import {Logger} from '../../src/log.js'
import {certificateFingerprint, createCertificateAuthority} from '../../src/pki/certificates.js'
import {KubernetesClusterRegistry} from '../../src/tower/proxy/kubernetes/kubernetes-registry.js'
import {KUBESPHERE_IDENTITY} from '../../src/tower/shared/identity.js'
import {ksctl} from '../helpers/ksctl-process.js'
import {grantKubesphereIdentity, leastPrivilegeAgent, untilAllowed} from '../helpers/member-rbac.js'
import {startKsctl, until as untilLogged, type RunningKsctl} from '../helpers/ksctl-running.js'
import {routeServicePort} from '../helpers/service-route.js'
import {tempDir} from '../helpers/temp-dir.js'
import {denyWrites} from '../testbed/admission.js'
import {freeClusterPorts, freePort} from '../testbed/http.js'
import {saturateUser} from '../testbed/priority-and-fairness.js'
import {adminApis, resetCluster} from '../testbed/seed.js'
import {testBed} from './hooks.js'

const COUNT = 200

describe('tower proxy, Kubernetes mode, against the real host apiserver', function () {
  this.timeout(240_000)

  it('initializes two hundred proxy Clusters with distinct ports and Services, and removes the Service of a deleted one', async () => {
    await resetCluster(testBed().kubeconfigPath, 'host', 'ks41-host')
    const host = ClusterClients.load({kubeconfig: testBed().kubeconfigPath}).forContext('host')
    const names = Array.from({length: COUNT}, (_, i) => `member-${String(i).padStart(3, '0')}`)
    for (const name of names) {
      await host.createCustomObject(ClusterResource, {
        apiVersion: 'cluster.kubesphere.io/v1alpha1',
        kind: 'Cluster',
        metadata: {name},
        spec: {joinFederation: true, connection: {type: 'proxy'}},
      })
    }
    const registry = new KubernetesClusterRegistry(host, {
      ca: await createCertificateAuthority({commonName: 'test-tower-ca', validityDays: 2}),
      kubeconfigValidityDays: 365,
      resyncMs: 60_000,
      log: new Logger('error'),
    })
    try {
      await registry.reconcile()
      const clusters = (await host.listCustomObjects<KubeSphereCluster>(ClusterResource)).filter((c) =>
        c.metadata?.name?.startsWith('member-'),
      )
      assert.equal(clusters.length, COUNT)
      const ports = clusters.map(
        (c) => (c.spec?.connection as {kubernetesAPIServerPort?: number}).kubernetesAPIServerPort,
      )
      assert.equal(new Set(ports).size, COUNT)
      for (const cluster of clusters) {
        assert.match(cluster.spec?.connection?.token ?? '', /^[0-9a-f]{64}$/)
        assert.match(cluster.spec?.connection?.kubernetesAPIEndpoint ?? '', /^https:\/\/10\.0\.0\.\d+:6443$/)
        assert.equal(cluster.status?.conditions?.find((c) => c.type === 'Initialized')?.status, 'True')
      }
      const services = await host.listServices(
        'kubesphere-system',
        'app.kubernetes.io/managed-by=ksctl-tower',
      )
      assert.equal(services.length, COUNT)

      await host.deleteCustomObject(ClusterResource, 'member-007')
      await registry.reconcile()
      const apis = adminApis(testBed().kubeconfigPath, 'host')
      await assert.rejects(
        apis.core.readNamespacedService({name: 'mc-member-007', namespace: 'kubesphere-system'}),
      )
      assert.equal(registry.list().length, COUNT - 1)
    } finally {
      await registry.close()
    }
  })
})

describe("member join with ksctl's own tower proxy (Kubernetes mode) and agent, real apiservers", function () {
  this.timeout(180_000)
  const runJs = path.resolve(import.meta.dirname, '..', '..', 'bin', 'run.js')
  const running: ResultPromise[] = []

  let undoRoute: (() => Promise<void>) | undefined
  const undoMember: (() => Promise<void>)[] = []

  after(async () => {
    for (const child of running) child.kill('SIGKILL')
    await Promise.allSettled(running)
    await undoRoute?.()
    for (const undo of undoMember) await undo()
  })

  function start(args: string[]): {child: ResultPromise; output: () => string} {
    const child = execa(process.execPath, [runJs, ...args, '--log-format', 'json'], {
      reject: false,
      stdin: 'ignore',
      env: {NO_COLOR: '1'},
    })
    running.push(child)
    let output = ''
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()))
    child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()))
    return {child, output: () => output}
  }

  it('initializes the Cluster, serves kubectl with the issued kubeconfig at the address it names (verified), keeps the pinned serving key across a proxy restart, fails fast through agent and proxy outages and recovers by itself', async () => {
    const kubeconfig = testBed().kubeconfigPath
    const [listenPort, frontEndPort] = [await freePort(), await freePort()]
    await resetCluster(kubeconfig, 'host', 'ks41-host', {
      proxyPublishAddress: `https://127.0.0.1:${String(listenPort)}`,
    })
    await resetCluster(kubeconfig, 'member', 'plain')
    // Free ports, not Tower's 6000-6999: a tower proxy running on this machine may hold those.
    const clusterPorts = await freeClusterPorts(4)
    const proxyArgs = [
      ...['tower', 'proxy', '--kubeconfig', kubeconfig, '--context', 'host', '--resync', '300ms'],
      ...['--listen', `127.0.0.1:${String(listenPort)}`, '--front-end', `127.0.0.1:${String(frontEndPort)}`],
      ...['--cluster-ports', clusterPorts.flag],
    ]
    let proxy = start(proxyArgs)
    await until(() => proxy.output().includes('tower proxy started'), 'the proxy', proxy.output)

    const dir = tempDir('ksctl-tower-k8s-')
    const join = await ksctl([
      'member',
      'join',
      'member1',
      '--kubeconfig',
      kubeconfig,
      '--host-context',
      'host',
      '--member-context',
      'member',
      '--output',
      path.join(dir, 'agent.yaml'),
      '--timeout',
      '30s',
    ])
    assert.equal(join.exitCode, 0, join.stderr)

    const host = ClusterClients.load({kubeconfig}).forContext('host')
    const registered = await host.findCustomObject<KubeSphereCluster>(ClusterResource, 'member1')
    const token = registered?.spec?.connection?.token ?? ''
    assert.match(token, /^[0-9a-f]{64}$/)
    // The agent pins the proxy's serving key, which the proxy keeps in a Secret: the pin holds across its restart.
    const serving = await host.findSecret('kubesphere-system', 'ksctl-tower-serving')
    assert.equal(serving?.type, 'kubernetes.io/tls')
    const pin = certificateFingerprint(serving?.data['tls.crt'] ?? '')
    // The agent's service account may only impersonate; kubectl below runs as KubeSphere's identity (the issued
    // kubeconfig's), which the member grants what KubeSphere needs, as ksctl's agent manifest does.
    const leastPrivilege = await leastPrivilegeAgent(
      kubeconfig,
      testBed().clusters.member.url,
      testBed().caCertPem,
    )
    undoMember.push(leastPrivilege.remove, await grantKubesphereIdentity(kubeconfig))
    await untilAllowed(kubeconfig, 'member', KUBESPHERE_IDENTITY, 'get', 'namespaces')
    const startAgent = () =>
      start([
        ...['tower', 'agent', '--name', 'member1', '--token', token, '--keepalive', '1s'],
        ...['--proxy-server', `https://127.0.0.1:${String(listenPort)}`, '--proxy-pin', pin],
        ...[...leastPrivilege.flags, '--max-retry-interval', '2s'],
      ])
    const agentAvailable = (status: 'True' | 'False', output: () => string) =>
      until(
        async () => {
          const current = await host.findCustomObject<KubeSphereCluster>(ClusterResource, 'member1')
          return conditionOf(current, 'AgentAvailable')?.status === status
        },
        `AgentAvailable ${status}`,
        output,
      )
    let agent = startAgent()
    await agentAvailable('True', agent.output)
    const cluster = await host.findCustomObject<KubeSphereCluster>(ClusterResource, 'member1')
    const issued = path.join(dir, 'issued-kubeconfig')
    await writeFile(issued, Buffer.from(cluster?.spec?.connection?.kubeconfig ?? '', 'base64'))
    const port = (cluster?.spec?.connection as {kubernetesAPIServerPort: number}).kubernetesAPIServerPort
    // kubectl goes to the server the issued kubeconfig names, Service mc-member1's ClusterIP, verifying the proxy's
    // certificate; the stand-in for kube-proxy forwards that ClusterIP's port 6443 to the cluster's port.
    const server = new URL(cluster?.spec?.connection?.kubernetesAPIEndpoint ?? '')
    assert.equal(server.port, '6443')
    undoRoute = await routeServicePort(server.hostname, 6443, port)
    const kubectlGet = async () => {
      const started = Date.now()
      const outcome = await execa(
        '/usr/bin/kubectl',
        [
          ...['--kubeconfig', issued, '--request-timeout', '20s'],
          ...['get', 'namespace', 'kube-system', '-o', 'name'],
        ],
        {reject: false, stdin: 'ignore'},
      )
      return {
        ok: outcome.stdout === 'namespace/kube-system',
        stderr: outcome.stderr,
        ms: Date.now() - started,
      }
    }
    const first = await kubectlGet()
    assert.equal(first.ok, true, first.stderr)

    agent.child.kill('SIGKILL')
    await agentAvailable('False', proxy.output)
    const duringAgentOutage = await kubectlGet()
    assert.equal(duringAgentOutage.ok, false)
    assert.ok(
      duringAgentOutage.ms < 5000,
      `a request without an agent failed after ${String(duringAgentOutage.ms)} ms`,
    )

    agent = startAgent()
    await agentAvailable('True', agent.output)
    assert.equal((await kubectlGet()).ok, true)

    proxy.child.kill('SIGTERM')
    assert.equal((await proxy.child).exitCode, 0)
    const duringProxyOutage = await kubectlGet()
    assert.equal(duringProxyOutage.ok, false)
    assert.ok(
      duringProxyOutage.ms < 5000,
      `a request without the proxy failed after ${String(duringProxyOutage.ms)} ms`,
    )
    proxy = start(proxyArgs)
    await until(
      async () => (await kubectlGet()).ok,
      'service to resume after the proxy restarted',
      agent.output,
    )
    await agentAvailable('True', proxy.output)
    const kept = await host.findSecret('kubesphere-system', 'ksctl-tower-serving')
    assert.equal(kept?.data['tls.key'], serving?.data['tls.key'], 'the restarted proxy kept the serving key')

    for (const output of [proxy.output(), agent.output()])
      assert.ok(!output.includes(token), 'no token in the logs')
    proxy.child.kill('SIGTERM')
    assert.equal((await proxy.child).exitCode, 0)
  })
})

describe('tower proxy, Kubernetes mode, when the API server refuses', function () {
  this.timeout(180_000)
  const running: RunningKsctl[] = []
  let caFlags: string[]

  before(async () => {
    const dir = tempDir('ksctl-tower-refusals-')
    const ca = await createCertificateAuthority({commonName: 'test-tower-ca', validityDays: 2})
    await writeFile(path.join(dir, 'ca.crt'), ca.certPem)
    await writeFile(path.join(dir, 'ca.key'), ca.keyPem, {mode: 0o600})
    // With the CA given, the proxy's first request is its first list of Clusters.
    caFlags = ['--ca-cert', path.join(dir, 'ca.crt'), '--ca-key', path.join(dir, 'ca.key')]
  })

  afterEach(async () => {
    for (const proxy of running.splice(0)) {
      proxy.process.kill('SIGKILL')
      await proxy.process
    }
  })

  function proxy(context: string, kubeconfig: string, extra: string[] = []): RunningKsctl {
    const started = startKsctl([
      ...['tower', 'proxy', '--kubeconfig', kubeconfig, '--context', context, ...caFlags],
      ...['--listen', '127.0.0.1:0', '--front-end', '127.0.0.1:0', '--resync', '300ms', ...extra],
    ])
    running.push(started)
    return started
  }

  it('waits out HTTP 429 from the real kube-apiserver on its first list (API Priority and Fairness), without a stack trace, and starts once served', async () => {
    const kubeconfig = testBed().kubeconfigPath
    await resetCluster(kubeconfig, 'host', 'ks41-host')
    const saturated = await saturateUser(kubeconfig, 'host', 'ksctl-test-tower-proxy')
    try {
      const started = proxy(saturated.context, saturated.kubeconfigPath, [
        '--cluster-ports',
        (await freeClusterPorts(2)).flag,
      ])
      await untilLogged(
        () => started.logged('cannot list the Clusters yet; retrying').length >= 2,
        'two retries',
        {
          output: started.output,
        },
      )
      const retries = started.logged('cannot list the Clusters yet; retrying')
      assert.match(String(retries[0]?.reason), /\(HTTP 429\)/)
      // Backoff: the waits grow (with jitter, each is at least half its base: 0.25 s, then 0.5 s).
      assert.ok(Number(retries[1]?.inMs) >= 250, JSON.stringify(retries))
      assert.equal(started.logged('tower proxy started').length, 0)
      await saturated.release()
      await untilLogged(
        () => started.logged('tower proxy started').length === 1,
        'the proxy to start once served',
        {
          output: started.output,
        },
      )
      assert.doesNotMatch(started.output(), /\n\s+at /)
      started.process.kill('SIGTERM')
      assert.equal((await started.process).exitCode, 0)
    } finally {
      await saturated.undo()
    }
  })

  it('exits at once on a failure waiting cannot fix, with one clear line and no stack trace (JSON with --log-format json)', async () => {
    const kubeconfig = testBed().kubeconfigPath
    await resetCluster(kubeconfig, 'host', 'ks41-host')
    // The test bed's limited user may list namespaces and configmaps, not Clusters nor Services (listed together).
    const forbidden = proxy('host-limited', kubeconfig)
    const {exitCode} = await forbidden.process
    assert.equal(exitCode, 1)
    const lines = forbidden
      .output()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
    const failures = lines.filter((line) => line.level === 'error')
    assert.equal(failures.length, 1, forbidden.output())
    const [failure] = failures
    assert.match(
      String(failure?.msg),
      /^forbidden: cannot list (clusters\.cluster\.kubesphere\.io|services in namespace kubesphere-system) in context "host-limited": .* is forbidden: User "ksctl-limited" cannot list resource/,
    )
    assert.equal(failure?.code, 'FORBIDDEN')
    assert.equal(failure?.stack, undefined)
    assert.doesNotMatch(forbidden.output(), /\n\s+at /)
    assert.ok(
      forbidden
        .output()
        .split('\n')
        .every((line) => line === '' || line.startsWith('{')),
      'only JSON lines',
    )
  })

  it('reconciles each Cluster on its own: a Cluster that refuses writes, and one with no free port, get Warning Events while the others are served; both recover', async () => {
    const kubeconfig = testBed().kubeconfigPath
    await resetCluster(kubeconfig, 'host', 'ks41-host')
    const host = ClusterClients.load({kubeconfig}).forContext('host')
    const ports = await freeClusterPorts(2)
    const create = (name: string, connection: Record<string, unknown> = {}) =>
      host.createCustomObject(ClusterResource, {
        apiVersion: 'cluster.kubesphere.io/v1alpha1',
        kind: 'Cluster',
        metadata: {name},
        spec: {joinFederation: true, connection: {type: 'proxy', ...connection}},
      })
    // `held` already has its token and the first port, as a Cluster the proxy initialized before.
    const heldToken = 'e'.repeat(64)
    await create('held', {token: heldToken, kubernetesAPIServerPort: ports.first})
    await create('member-a')
    await create('member-b')
    const apis = adminApis(kubeconfig, 'host')
    const refused = () =>
      apis.custom
        .patchClusterCustomObject(
          {
            group: 'cluster.kubesphere.io',
            version: 'v1alpha1',
            plural: 'clusters',
            name: 'held',
            body: {metadata: {labels: {probe: 'x'}}},
            dryRun: 'All',
          },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        )
        .then(
          () => false,
          () => true,
        )
    const undoDeny = await denyWrites(
      kubeconfig,
      'host',
      'ksctl-test-deny-held',
      {group: 'cluster.kubesphere.io', resource: 'clusters', operations: ['UPDATE'], names: ['held']},
      refused,
    )
    let denied = true
    try {
      const started = proxy('host', kubeconfig, ['--cluster-ports', ports.flag])
      await untilLogged(() => started.logged('tower proxy started').length === 1, 'the proxy to start', {
        output: started.output,
      })
      const stored = (name: string) => host.findCustomObject<KubeSphereCluster>(ClusterResource, name)
      const a = await stored('member-a')
      assert.equal(
        (a?.spec?.connection as {kubernetesAPIServerPort?: number}).kubernetesAPIServerPort,
        ports.last,
      )
      assert.equal(conditionOf(a, 'Initialized')?.status, 'True')
      assert.equal(conditionOf(await stored('held'), 'Initialized'), undefined)
      assert.equal(await stored('member-b').then((b) => b?.spec?.connection?.token), undefined)

      const warnings = async (name: string) =>
        (
          await apis.core.listNamespacedEvent({
            namespace: 'default',
            fieldSelector: `involvedObject.kind=Cluster,involvedObject.name=${name}`,
          })
        ).items.map((event) => [event.type, event.reason, event.message ?? ''])
      const [heldEvent] = await warnings('held')
      assert.deepEqual(heldEvent?.slice(0, 2), ['Warning', 'ReconcileFailed'])
      assert.match(heldEvent?.[2] ?? '', /ksctl-test-deny-held: refused by the test/)
      const [noPort] = await warnings('member-b')
      assert.deepEqual(noPort?.slice(0, 2), ['Warning', 'NoFreePort'])
      assert.match(noPort?.[2] ?? '', new RegExp(`no free port in ${ports.flag}`))
      // `held` is served with what it holds: its front-end port is open and an agent with its token is let in.
      await assertListening(ports.first)

      await undoDeny()
      denied = false
      await untilLogged(
        async () => conditionOf(await stored('held'), 'Initialized')?.status === 'True',
        'held to be initialized once writes are allowed',
        {output: started.output},
      )
      await host.deleteCustomObject(ClusterResource, 'member-a')
      await untilLogged(
        async () => conditionOf(await stored('member-b'), 'Initialized')?.status === 'True',
        'member-b to get the port member-a freed',
        {output: started.output},
      )
      assert.ok(!started.output().includes(heldToken), 'no token in the logs')
      started.process.kill('SIGTERM')
      assert.equal((await started.process).exitCode, 0)
    } finally {
      if (denied) await undoDeny()
    }
  })
})

function assertListening(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({host: '127.0.0.1', port}, () => {
      socket.destroy()
      resolve()
    })
    socket.once('error', reject)
  })
}

async function until(
  condition: () => boolean | Promise<boolean>,
  what: string,
  output: () => string,
  timeoutMs = 45_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}; output:\n${output().slice(-3000)}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}
