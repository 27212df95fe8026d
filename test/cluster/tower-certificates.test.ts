import assert from 'node:assert/strict'
import type {X509Certificate} from 'node:crypto'
import {writeFile} from 'node:fs/promises'
import path from 'node:path'
import tls from 'node:tls'

import {execa} from 'execa'
import {load} from 'js-yaml'

import {ClusterClients} from '../../src/k8s/clients.js'
import {ClusterResource} from '../../src/k8s/resources.js'
import {conditionOf, type KubeSphereCluster} from '../../src/kubesphere/cluster-object.js'
import {certificateFingerprint, createCertificateAuthority, issuedBy} from '../../src/pki/certificates.js'
import {KUBESPHERE_IDENTITY} from '../../src/tower/shared/identity.js'
import {ksctl} from '../helpers/ksctl-process.js'
import {grantKubesphereIdentity, leastPrivilegeAgent, untilAllowed} from '../helpers/member-rbac.js'
import {startKsctl, until, type RunningKsctl} from '../helpers/ksctl-running.js'
import {routeServicePort} from '../helpers/service-route.js'
import {tempDir} from '../helpers/temp-dir.js'
import {freeClusterPorts, freePort} from '../testbed/http.js'
import {resetCluster} from '../testbed/seed.js'
import {testBed} from './hooks.js'

/** Short enough to see two renewals in a test (each at two thirds), long enough for kubectl between them. */
const VALIDITY = '24s'

// ksctl's runtime is the same on either edition; the host fixture differs (ks-installer's ClusterConfiguration on
// 3.4, the ks-core release's objects on 4.1), and the issue asks for both.
for (const {edition, hostFixture, memberFixture} of [
  {edition: '3.4', hostFixture: 'ks34-host', memberFixture: 'ks34-none'},
  {edition: '4.1', hostFixture: 'ks41-host', memberFixture: 'plain'},
] as const) {
  describe(`tower proxy, Kubernetes mode: certificates that last, against the real host and member apiservers (KubeSphere ${edition} host)`, function () {
    this.timeout(180_000)
    const running: RunningKsctl[] = []
    let undoRoute: (() => Promise<void>) | undefined
    const undoMember: (() => Promise<void>)[] = []

    after(async () => {
      for (const started of running) started.process.kill('SIGKILL')
      await Promise.allSettled(running.map((started) => started.process))
      await undoRoute?.()
      for (const undo of undoMember) await undo()
    })

    function start(args: string[]): RunningKsctl {
      const started = startKsctl(args)
      running.push(started)
      return started
    }

    it('issues the Cluster kubeconfig and the serving certificates again before they expire and after a CA rotation, while kubectl at the issued address (verified) and the pinned agent keep working', async () => {
      const kubeconfig = testBed().kubeconfigPath
      const [listenPort, frontEndPort] = [await freePort(), await freePort()]
      await resetCluster(kubeconfig, 'host', hostFixture, {
        proxyPublishAddress: `https://127.0.0.1:${String(listenPort)}`,
      })
      await resetCluster(kubeconfig, 'member', memberFixture)
      const proxy = start([
        ...['tower', 'proxy', '--kubeconfig', kubeconfig, '--context', 'host', '--resync', '300ms'],
        ...[
          '--listen',
          `127.0.0.1:${String(listenPort)}`,
          '--front-end',
          `127.0.0.1:${String(frontEndPort)}`,
        ],
        ...['--cluster-ports', (await freeClusterPorts(2)).flag],
        ...['--kubeconfig-validity', VALIDITY, '--serving-validity', VALIDITY],
      ])
      await until(() => proxy.logged('tower proxy started').length === 1, 'the proxy', {output: proxy.output})

      const dir = tempDir('ksctl-tower-certs-')
      const join = await ksctl([
        ...['member', 'join', 'member1', '--kubeconfig', kubeconfig],
        ...['--host-context', 'host', '--member-context', 'member'],
        ...['--output', path.join(dir, 'agent.yaml'), '--timeout', '30s'],
      ])
      assert.equal(join.exitCode, 0, join.stderr)
      const host = ClusterClients.load({kubeconfig}).forContext('host')
      const stored = () => host.findCustomObject<KubeSphereCluster>(ClusterResource, 'member1')
      const token = (await stored())?.spec?.connection?.token ?? ''
      const serving = await host.findSecret('kubesphere-system', 'ksctl-tower-serving')
      const pin = certificateFingerprint(serving?.data['tls.crt'] ?? '')
      // The agent's service account may only impersonate; kubectl below runs as KubeSphere's identity.
      const leastPrivilege = await leastPrivilegeAgent(
        kubeconfig,
        testBed().clusters.member.url,
        testBed().caCertPem,
      )
      undoMember.push(leastPrivilege.remove, await grantKubesphereIdentity(kubeconfig))
      await untilAllowed(kubeconfig, 'member', KUBESPHERE_IDENTITY, 'get', 'namespaces')
      const agent = start([
        ...['tower', 'agent', '--name', 'member1', '--token', token, '--keepalive', '1s'],
        ...['--proxy-server', `https://127.0.0.1:${String(listenPort)}`, '--proxy-pin', pin],
        ...[...leastPrivilege.flags, '--max-retry-interval', '1s'],
      ])
      const issuedKubeconfig = async () => (await stored())?.spec?.connection?.kubeconfig ?? ''
      await until(
        async () =>
          conditionOf(await stored(), 'AgentAvailable')?.status === 'True' &&
          (await issuedKubeconfig()) !== '',
        'the agent and the issued kubeconfig',
        {output: agent.output},
      )
      const connection = (await stored())?.spec?.connection as {
        kubernetesAPIEndpoint: string
        kubernetesAPIServerPort: number
      }
      const clusterIp = new URL(connection.kubernetesAPIEndpoint).hostname
      undoRoute = await routeServicePort(clusterIp, 6443, connection.kubernetesAPIServerPort)

      let written = 0
      const kubectlWith = async (base64: string) => {
        const file = path.join(dir, `kubeconfig-${String(++written)}`)
        await writeFile(file, Buffer.from(base64, 'base64'), {mode: 0o600})
        const outcome = await execa(
          '/usr/bin/kubectl',
          ['--kubeconfig', file, '--request-timeout', '10s', 'get', 'namespace', 'kube-system', '-o', 'name'],
          {reject: false, stdin: 'ignore'},
        )
        return {ok: outcome.stdout === 'namespace/kube-system', stderr: outcome.stderr}
      }
      const assertKubectlWorks = async (base64: string) => {
        const outcome = await kubectlWith(base64)
        assert.equal(outcome.ok, true, outcome.stderr)
      }
      const first = await issuedKubeconfig()
      const firstServing = await presented(connection.kubernetesAPIServerPort, caOf(first), clusterIp)
      await assertKubectlWorks(first)

      // Renewal: the Cluster gets a new kubeconfig before the first one expires, and the cluster port a new certificate.
      await until(async () => (await issuedKubeconfig()) !== first, 'the kubeconfig to be issued again', {
        timeoutMs: 40_000,
        output: proxy.output,
      })
      const renewed = await issuedKubeconfig()
      await assertKubectlWorks(renewed)
      assert.match(proxy.output(), /two thirds of its validity have passed/)
      await until(
        async () =>
          (await presented(connection.kubernetesAPIServerPort, caOf(renewed), clusterIp)).serialNumber !==
          firstServing.serialNumber,
        'the serving certificate to be issued again',
        {timeoutMs: 40_000, output: proxy.output},
      )
      const renewedServing = await presented(connection.kubernetesAPIServerPort, caOf(renewed), clusterIp)
      assert.equal(certificateFingerprint(renewedServing.toString()), pin)

      // CA rotation: the operator replaces the CA in its Secret; the running proxy issues everything again from it.
      const rotated = await createCertificateAuthority({
        commonName: 'ksctl-tower-ca-rotated',
        validityDays: 30,
      })
      const caSecret = await host.findSecret('kubesphere-system', 'ksctl-tower-ca')
      assert.ok(caSecret !== undefined)
      await host.replaceSecret({...caSecret, data: {'tls.crt': rotated.certPem, 'tls.key': rotated.keyPem}})
      await until(
        async () => caOf(await issuedKubeconfig()).trim() === rotated.certPem.trim(),
        'a kubeconfig of the new CA',
        {timeoutMs: 20_000, output: proxy.output},
      )
      const afterRotation = await issuedKubeconfig()
      assert.ok(issuedBy(clientCertificateOf(afterRotation), rotated.certPem))
      await until(
        async () => (await kubectlWith(afterRotation)).ok,
        'kubectl with the kubeconfig of the new CA',
        {
          timeoutMs: 20_000,
          output: proxy.output,
        },
      )
      const oldCredential = await kubectlWith(renewed)
      assert.equal(oldCredential.ok, false, 'a kubeconfig of the CA rotated out is refused')
      assert.equal(conditionOf(await stored(), 'AgentAvailable')?.status, 'True')
      assert.equal(
        certificateFingerprint(
          (await presented(connection.kubernetesAPIServerPort, rotated.certPem, clusterIp)).toString(),
        ),
        pin,
        'the serving key stays through a CA rotation',
      )

      for (const output of [proxy.output(), agent.output()]) {
        assert.ok(!output.includes(token), 'no token in the logs')
        assert.ok(!output.includes(rotated.keyPem.split('\n')[1] ?? 'x'), 'no CA key in the logs')
      }
      proxy.process.kill('SIGTERM')
      assert.equal((await proxy.process).exitCode, 0)
    })
  })

  function caOf(base64: string): string {
    const document = load(Buffer.from(base64, 'base64').toString()) as {
      clusters: {cluster: {'certificate-authority-data': string}}[]
    }
    return Buffer.from(document.clusters[0]?.cluster['certificate-authority-data'] ?? '', 'base64').toString()
  }

  function clientCertificateOf(base64: string): string {
    const document = load(Buffer.from(base64, 'base64').toString()) as {
      users: {user: {'client-certificate-data': string}}[]
    }
    return Buffer.from(document.users[0]?.user['client-certificate-data'] ?? '', 'base64').toString()
  }

  /** The certificate the proxy presents at 127.0.0.1:port, verified against `caPem` for the name `as`. */
  function presented(port: number, caPem: string, as: string): Promise<X509Certificate> {
    return new Promise((resolve, reject) => {
      const socket = tls.connect({
        host: '127.0.0.1',
        port,
        ca: caPem,
        checkServerIdentity: (_host, certificate) => tls.checkServerIdentity(as, certificate),
      })
      socket.once('secureConnect', () => {
        const certificate = socket.getPeerX509Certificate()
        socket.destroy()
        if (certificate === undefined) reject(new Error('no certificate'))
        else resolve(certificate)
      })
      socket.once('error', reject)
    })
  }
}
