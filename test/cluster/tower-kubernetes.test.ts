import assert from 'node:assert/strict'
import {writeFile} from 'node:fs/promises'
import path from 'node:path'

import {execa, type ResultPromise} from 'execa'

import {ClusterClients} from '../../src/k8s/clients.js'
import {ClusterResource} from '../../src/k8s/resources.js'
import {conditionOf, type KubeSphereCluster} from '../../src/kubesphere/cluster-object.js'
import {Logger} from '../../src/log.js'
import {createCertificateAuthority} from '../../src/pki/certificates.js'
import {KubernetesClusterRegistry} from '../../src/tower/kubernetes-registry.js'
import {ksctl} from '../helpers/ksctl-process.js'
import {tempDir} from '../helpers/temp-dir.js'
import {freePort} from '../testbed/http.js'
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

  after(async () => {
    for (const child of running) child.kill('SIGKILL')
    await Promise.allSettled(running)
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

  it('initializes the Cluster, serves kubectl with the issued kubeconfig, fails fast through agent and proxy outages and recovers by itself', async () => {
    const kubeconfig = testBed().kubeconfigPath
    const [listenPort, frontEndPort] = [await freePort(), await freePort()]
    await resetCluster(kubeconfig, 'host', 'ks41-host', {
      proxyPublishAddress: `https://127.0.0.1:${String(listenPort)}`,
    })
    await resetCluster(kubeconfig, 'member', 'plain')
    const proxyArgs = [
      ...['tower', 'proxy', '--kubeconfig', kubeconfig, '--context', 'host', '--resync', '300ms'],
      ...['--listen', `127.0.0.1:${String(listenPort)}`, '--front-end', `127.0.0.1:${String(frontEndPort)}`],
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
    const ca = await host.findSecret('kubesphere-system', 'ksctl-tower-ca')
    await writeFile(path.join(dir, 'ca.crt'), ca?.data['tls.crt'] ?? '')
    const startAgent = () =>
      start([
        ...['tower', 'agent', '--name', 'member1', '--token', token, '--keepalive', '1s'],
        ...[
          '--proxy-server',
          `https://127.0.0.1:${String(listenPort)}`,
          '--proxy-ca',
          path.join(dir, 'ca.crt'),
        ],
        ...['--kubeconfig', kubeconfig, '--context', 'member', '--max-retry-interval', '2s'],
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
    // The issued server is the mc-NAME ClusterIP, which only kube-proxy could route; the per-cluster port is the same listener.
    const kubectlGet = async () => {
      const started = Date.now()
      const outcome = await execa(
        '/usr/bin/kubectl',
        [
          ...[
            '--kubeconfig',
            issued,
            '--server',
            `https://127.0.0.1:${String(port)}`,
            '--request-timeout',
            '20s',
          ],
          'get',
          'namespace',
          'kube-system',
          '-o',
          'name',
        ],
        {reject: false, stdin: 'ignore'},
      )
      return {
        ok: outcome.stdout === 'namespace/kube-system',
        stderr: outcome.stderr,
        ms: Date.now() - started,
      }
    }
    assert.equal((await kubectlGet()).ok, true)

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

    for (const output of [proxy.output(), agent.output()])
      assert.ok(!output.includes(token), 'no token in the logs')
    proxy.child.kill('SIGTERM')
    assert.equal((await proxy.child).exitCode, 0)
  })
})

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
