import assert from 'node:assert/strict'
import {readFile, writeFile} from 'node:fs/promises'
import path from 'node:path'

import {execa} from 'execa'
import {dump, load} from 'js-yaml'

import {ClusterClients} from '../../src/k8s/clients.js'
import {ClusterResource} from '../../src/k8s/resources.js'
import {conditionOf, type KubeSphereCluster} from '../../src/kubesphere/cluster-object.js'
import {createCertificateAuthority} from '../../src/pki/certificates.js'
import {kubespherePortsPolicy} from '../../src/tower/proxy/kubesphere-ports-policy.js'
import {KUBESPHERE_IDENTITY} from '../../src/tower/shared/identity.js'
import {ksctl} from '../helpers/ksctl-process.js'
import {startKsctl, until, type RunningKsctl} from '../helpers/ksctl-running.js'
import {
  grantKubesphereIdentity,
  grantUser,
  leastPrivilegeAgent,
  untilAllowed,
} from '../helpers/member-rbac.js'
import {tempDir} from '../helpers/temp-dir.js'
import {freeClusterPorts, freePort} from '../testbed/http.js'
import {adminApis, resetCluster} from '../testbed/seed.js'
import {testBed} from './hooks.js'

const kubectlBinary = '/usr/bin/kubectl'

interface SelfSubjectReview {
  status: {userInfo: {username: string; groups?: string[]}}
}

// ksctl's runtime is the same on either edition; the host fixture differs (ks-installer's ClusterConfiguration on
// 3.4, the ks-core release's objects on 4.1), and the issue asks for both.
for (const {edition, hostFixture} of [
  {edition: '3.4', hostFixture: 'ks34-host'},
  {edition: '4.1', hostFixture: 'ks41-host'},
] as const) {
  describe(`tower proxy and agent: per-cluster credentials and the client’s identity on the real member (KubeSphere ${edition} host)`, function () {
    this.timeout(240_000)
    const running: RunningKsctl[] = []
    const cleanups: (() => Promise<unknown>)[] = []
    let dir: string
    let caFlags: string[]
    let frontEndPort: number
    let listenPort: number
    let ports: Record<'member1' | 'member2', number>
    let agent: {flags: string[]}
    let proxy: RunningKsctl

    function start(args: string[]): RunningKsctl {
      const started = startKsctl(args)
      running.push(started)
      return started
    }

    async function kubectl(kubeconfig: string, args: string[]) {
      return execa(kubectlBinary, ['--kubeconfig', kubeconfig, '--request-timeout', '20s', ...args], {
        reject: false,
        stdin: 'ignore',
      })
    }

    /** `ksctl tower issue-kubeconfig` for `cluster`, at `server`, as `identity` (`--user`, `--group`). */
    async function issue(cluster: string, server: string, identity: string[], name: string): Promise<string> {
      const file = path.join(dir, name)
      const issued = await ksctl([
        ...['tower', 'issue-kubeconfig', '--cluster', cluster, '--server', server, '-f', file],
        ...identity,
        ...caFlags,
      ])
      assert.equal(issued.exitCode, 0, issued.stderr)
      return file
    }

    /** The same kubeconfig pointed at another front-end address (what a leaked kubeconfig's holder would try). */
    async function pointedAt(kubeconfig: string, server: string, name: string): Promise<string> {
      const document = load(await readFile(kubeconfig, 'utf8')) as {clusters: {cluster: {server: string}}[]}
      for (const entry of document.clusters) entry.cluster.server = server
      const file = path.join(dir, name)
      await writeFile(file, dump(document), {mode: 0o600})
      return file
    }

    before(async () => {
      const kubeconfig = testBed().kubeconfigPath
      dir = tempDir('ksctl-tower-authz-')
      ;[listenPort, frontEndPort] = [await freePort(), await freePort()]
      await resetCluster(kubeconfig, 'host', hostFixture, {
        proxyPublishAddress: `https://127.0.0.1:${String(listenPort)}`,
      })
      await resetCluster(kubeconfig, 'member', 'plain')
      const ca = await createCertificateAuthority({commonName: 'test-tower-authz-ca', validityDays: 2})
      await writeFile(path.join(dir, 'ca.crt'), ca.certPem)
      await writeFile(path.join(dir, 'ca.key'), ca.keyPem, {mode: 0o600})
      caFlags = ['--ca-cert', path.join(dir, 'ca.crt'), '--ca-key', path.join(dir, 'ca.key')]
      const host = ClusterClients.load({kubeconfig}).forContext('host')
      for (const name of ['member1', 'member2']) {
        await host.createCustomObject(ClusterResource, {
          apiVersion: 'cluster.kubesphere.io/v1alpha1',
          kind: 'Cluster',
          metadata: {name},
          spec: {joinFederation: true, connection: {type: 'proxy'}},
        })
      }
      proxy = start([
        ...[
          'tower',
          'proxy',
          '--kubeconfig',
          kubeconfig,
          '--context',
          'host',
          '--resync',
          '300ms',
          ...caFlags,
        ],
        ...[
          '--listen',
          `127.0.0.1:${String(listenPort)}`,
          '--front-end',
          `127.0.0.1:${String(frontEndPort)}`,
        ],
        ...['--cluster-ports', (await freeClusterPorts(2)).flag],
      ])
      await until(() => proxy.logged('tower proxy started').length === 1, 'the proxy', {output: proxy.output})
      const {member} = testBed().clusters
      const leastPrivilege = await leastPrivilegeAgent(kubeconfig, member.url, testBed().caCertPem)
      cleanups.push(leastPrivilege.remove)
      agent = leastPrivilege
      const stored = (name: string) => host.findCustomObject<KubeSphereCluster>(ClusterResource, name)
      ports = {member1: 0, member2: 0}
      // One agent per Cluster, both on the one member apiserver, both with the service account that may only impersonate.
      for (const name of ['member1', 'member2'] as const) {
        await until(
          async () => ((await stored(name))?.spec?.connection?.token ?? '') !== '',
          `${name}'s token`,
          {
            output: proxy.output,
          },
        )
        const connection = (await stored(name))?.spec?.connection as {
          token: string
          kubernetesAPIServerPort: number
        }
        ports[name] = connection.kubernetesAPIServerPort
        await writeFile(path.join(dir, `${name}.token`), connection.token, {mode: 0o600})
        start([
          ...['tower', 'agent', '--name', name, '--token-file', path.join(dir, `${name}.token`)],
          ...[
            '--proxy-server',
            `https://127.0.0.1:${String(listenPort)}`,
            '--proxy-ca',
            path.join(dir, 'ca.crt'),
          ],
          ...['--keepalive', '1s', '--max-retry-interval', '1s', ...agent.flags],
        ])
        await until(
          async () => conditionOf(await stored(name), 'AgentAvailable')?.status === 'True',
          `${name}'s agent`,
          {output: proxy.output},
        )
      }
    })

    after(async () => {
      for (const started of running) started.process.kill('SIGTERM')
      await Promise.allSettled(running.map((started) => started.process))
      for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined)
      const logs = running.map((started) => started.output()).join('\n')
      assert.doesNotMatch(
        logs,
        /BEGIN CERTIFICATE|BEGIN [A-Z ]*PRIVATE KEY/,
        'no certificate or key in the logs',
      )
    })

    it('refuses a credential issued for cluster member1 on member2, at both front ends, with 403 saying what to use', async () => {
      const pathRouted = (cluster: string) => `https://127.0.0.1:${String(frontEndPort)}/clusters/${cluster}`
      const ownPort = (cluster: 'member1' | 'member2') => `https://127.0.0.1:${String(ports[cluster])}`
      const forMember1 = await issue(
        'member1',
        pathRouted('member1'),
        ['--user', 'alice'],
        'member1.kubeconfig',
      )
      const forMember2 = await issue(
        'member2',
        pathRouted('member2'),
        ['--user', 'alice'],
        'member2.kubeconfig',
      )
      // Each works where it belongs (the member answers: alice may read nothing yet, but the request got there)...
      for (const [file, server] of [
        [forMember1, pathRouted('member1')],
        [forMember1, ownPort('member1')],
        [forMember2, pathRouted('member2')],
        [forMember2, ownPort('member2')],
      ] as const) {
        const whoami = await kubectl(await pointedAt(file, server, 'at.kubeconfig'), [
          'auth',
          'whoami',
          '-o',
          'json',
        ])
        assert.equal(whoami.exitCode, 0, `${server}: ${whoami.stderr}`)
      }
      // ...and nowhere else.
      for (const server of [pathRouted('member2'), ownPort('member2')]) {
        const leaked = await kubectl(await pointedAt(forMember1, server, 'leaked.kubeconfig'), [
          'get',
          'namespaces',
        ])
        assert.notEqual(leaked.exitCode, 0, server)
        assert.match(
          leaked.stderr,
          /Forbidden.*this client certificate is bound to cluster member1, not member2: use a kubeconfig issued for cluster member2 \(ksctl tower issue-kubeconfig --cluster member2\)/,
          `${server}: ${leaked.stderr}`,
        )
      }
      const refusals = proxy
        .logged('refused a client at a front end')
        .filter((line) => line.reason === 'wrong_cluster')
      // kubectl asks several times (discovery, then the list): each refusal names both clusters, never the certificate.
      assert.ok(refusals.length >= 2, JSON.stringify(refusals))
      for (const line of refusals) assert.deepEqual([line.cluster, line.boundTo], ['member2', 'member1'])
    })

    it('kubectl auth whoami through the tunnel shows the client’s identity, not the agent’s; the member’s RBAC applies to it', async () => {
      const kubeconfig = testBed().kubeconfigPath
      const alice = await issue(
        'member1',
        `https://127.0.0.1:${String(frontEndPort)}/clusters/member1`,
        ['--user', 'alice', '--group', 'dev'],
        'alice.kubeconfig',
      )
      const whoami = await kubectl(alice, ['auth', 'whoami', '-o', 'json'])
      assert.equal(whoami.exitCode, 0, whoami.stderr)
      const review = JSON.parse(whoami.stdout) as SelfSubjectReview
      assert.equal(review.status.userInfo.username, 'alice')
      assert.deepEqual(review.status.userInfo.groups, ['dev', 'system:authenticated'])

      const before = await kubectl(alice, ['get', 'configmaps', '-n', 'default'])
      assert.notEqual(before.exitCode, 0)
      assert.match(before.stderr, /User "alice" cannot list resource "configmaps"/)
      cleanups.push(
        await grantUser(kubeconfig, 'member', {
          name: 'ksctl-test-alice',
          user: 'alice',
          rules: [{apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'list']}],
        }),
      )
      await untilAllowed(kubeconfig, 'member', {user: 'alice'}, 'list', 'configmaps')
      const after = await kubectl(alice, ['get', 'configmaps', '-n', 'default', '-o', 'name'])
      assert.equal(after.exitCode, 0, after.stderr)

      // kubectl --as would have the agent impersonate twice: refused, with the way to get that identity instead.
      const asAdmin = await kubectl(alice, ['--as', 'admin', 'get', 'namespaces'])
      assert.notEqual(asAdmin.exitCode, 0)
      assert.match(
        asAdmin.stderr,
        /does not pass on Impersonate-User \(kubectl --as, --as-group\): issue a kubeconfig/,
      )
    })

    it("runs the Cluster's own kubeconfig as KubeSphere's identity, which needs its binding on the member", async () => {
      const kubeconfig = testBed().kubeconfigPath
      const host = ClusterClients.load({kubeconfig}).forContext('host')
      await until(
        async () =>
          ((await host.findCustomObject<KubeSphereCluster>(ClusterResource, 'member1'))?.spec?.connection
            ?.kubeconfig ?? '') !== '',
        'the issued kubeconfig',
        {output: proxy.output},
      )
      const cluster = await host.findCustomObject<KubeSphereCluster>(ClusterResource, 'member1')
      const issued = path.join(dir, 'kubesphere.kubeconfig')
      await writeFile(issued, Buffer.from(cluster?.spec?.connection?.kubeconfig ?? '', 'base64'), {
        mode: 0o600,
      })
      // Its server is Service mc-member1's ClusterIP; this machine reaches the proxy's port for member1 directly.
      const atPort = ['--server', `https://127.0.0.1:${String(ports.member1)}`]
      const review = JSON.parse(
        (await kubectl(issued, [...atPort, 'auth', 'whoami', '-o', 'json'])).stdout,
      ) as SelfSubjectReview
      assert.equal(review.status.userInfo.username, 'ksctl:kubesphere')
      assert.deepEqual(review.status.userInfo.groups, ['ksctl:kubesphere', 'system:authenticated'])
      const denied = await kubectl(issued, [...atPort, 'get', 'namespace', 'kube-system'])
      assert.match(denied.stderr, /User "ksctl:kubesphere" cannot get resource "namespaces"/)
      cleanups.push(await grantKubesphereIdentity(kubeconfig))
      await untilAllowed(kubeconfig, 'member', KUBESPHERE_IDENTITY, 'get', 'namespaces')
      const granted = await kubectl(issued, [...atPort, 'get', 'namespace', 'kube-system', '-o', 'name'])
      assert.equal(granted.stdout, 'namespace/kube-system', granted.stderr)
    })

    it('serves get, watch and exec (an upgrade) as the client while the agent’s service account may only impersonate', async () => {
      const kubeconfig = testBed().kubeconfigPath
      const bob = await issue(
        'member1',
        `https://127.0.0.1:${String(ports.member1)}`,
        ['--user', 'bob', '--group', 'editors'],
        'bob.kubeconfig',
      )
      const member = adminApis(kubeconfig, 'member')
      // What the agent's own account may do: impersonate, and nothing it could run requests as.
      const agentAccount = 'system:serviceaccount:kube-system:ksctl-tower-agent'
      const can = async (verb: string, resource: string) =>
        (
          await execa(
            kubectlBinary,
            [
              ...['--kubeconfig', kubeconfig, '--context', 'member', 'auth', 'can-i', verb, resource],
              ...['--as', agentAccount],
            ],
            {reject: false},
          )
        ).stdout
      assert.equal(await can('impersonate', 'users'), 'yes')
      assert.equal(await can('list', 'configmaps'), 'no')
      assert.equal(await can('create', 'pods/exec'), 'no')

      await member.core.createNamespacedPod({
        namespace: 'default',
        body: {metadata: {name: 'ksctl-authz-exec'}, spec: {containers: [{name: 'c', image: 'busybox'}]}},
      })
      cleanups.push(() => member.core.deleteNamespacedPod({namespace: 'default', name: 'ksctl-authz-exec'}))
      // exec is an upgrade (kubectl reads the pod first, a plain request): with view, bob may read the pod but not
      // exec, and kube-apiserver refuses bob, not the agent, on the upgrade request itself.
      cleanups.push(
        await grantUser(kubeconfig, 'member', {
          name: 'ksctl-test-bob-read',
          user: 'bob',
          rules: [{apiGroups: [''], resources: ['pods', 'configmaps'], verbs: ['get', 'list', 'watch']}],
        }),
      )
      await untilAllowed(kubeconfig, 'member', {user: 'bob'}, 'get', 'pods')
      const refusedExec = await kubectl(bob, ['exec', '-n', 'default', 'ksctl-authz-exec', '--', 'true'])
      assert.match(refusedExec.stderr, /User "bob" cannot create resource "pods\/exec"/)
      cleanups.push(
        await grantUser(kubeconfig, 'member', {
          name: 'ksctl-test-bob-write',
          user: 'bob',
          rules: [
            {apiGroups: [''], resources: ['pods/exec'], verbs: ['create', 'get']},
            {apiGroups: [''], resources: ['configmaps'], verbs: ['create']},
          ],
        }),
      )
      await untilAllowed(kubeconfig, 'member', {user: 'bob'}, 'create', 'pods/exec')
      // Once bob may, the upgrade passes authorization and reaches the pod, which no kubelet runs here.
      const exec = await kubectl(bob, ['exec', '-n', 'default', 'ksctl-authz-exec', '--', 'true'])
      assert.match(exec.stderr, /does not have a host assigned/)
      assert.doesNotMatch(exec.stderr, /forbidden/i)

      const first = await kubectl(bob, ['create', 'configmap', 'ksctl-authz-listed', '-n', 'default'])
      assert.equal(first.exitCode, 0, first.stderr)
      cleanups.push(() =>
        member.core.deleteNamespacedConfigMap({namespace: 'default', name: 'ksctl-authz-listed'}),
      )
      const watch = execa(
        kubectlBinary,
        ['--kubeconfig', bob, 'get', 'configmaps', '-n', 'default', '--watch', '-o', 'name'],
        {reject: false, stdin: 'ignore'},
      )
      try {
        let seen = ''
        watch.stdout?.on('data', (chunk: Buffer) => (seen += chunk.toString()))
        await until(() => seen.includes('configmap/ksctl-authz-listed'), 'the watch to list', {
          output: () => seen,
        })
        const created = await kubectl(bob, ['create', 'configmap', 'ksctl-authz-watched', '-n', 'default'])
        assert.equal(created.exitCode, 0, created.stderr)
        cleanups.push(() =>
          member.core.deleteNamespacedConfigMap({namespace: 'default', name: 'ksctl-authz-watched'}),
        )
        await until(() => seen.includes('configmap/ksctl-authz-watched'), 'the watch event', {
          output: () => seen,
        })
      } finally {
        watch.kill('SIGTERM')
        await watch
      }
    })

    it('refuses plain ws:// unless the agent and the proxy were both started with --insecure-plain', async () => {
      const token = 'cluster-authz-plain-token-0123456789'
      await writeFile(path.join(dir, 'plain.token'), token, {mode: 0o600})
      const agentTo = (port: number, extra: string[]) =>
        start([
          ...['tower', 'agent', '--name', 'plain', '--token-file', path.join(dir, 'plain.token')],
          ...[
            '--proxy-server',
            `http://127.0.0.1:${String(port)}`,
            '--max-retry',
            '1',
            '--max-retry-interval',
            '1s',
          ],
          ...agent.flags,
          ...extra,
        ])
      // The agent without the flag: exit 2 before any connection.
      const unflagged = agentTo(listenPort, [])
      assert.equal((await unflagged.process).exitCode, 2)
      assert.match(
        unflagged.output(),
        /is plain ws:\/\/.*start both ksctl tower proxy and ksctl tower agent with --insecure-plain/s,
      )
      // The agent with it, against the proxy without it (its listener speaks TLS): no session, the agent gives up.
      const connectedBefore = proxy.logged('agent connected').length
      const againstTls = agentTo(listenPort, ['--insecure-plain'])
      assert.equal((await againstTls.process).exitCode, 1)
      assert.equal(proxy.logged('agent connected').length, connectedBefore)
      // Both with it: a session.
      const clusters = path.join(dir, 'plain-clusters.yaml')
      await writeFile(clusters, `- {name: plain, token: ${token}}\n`)
      const plainPort = await freePort()
      const plainProxy = start([
        ...[
          'tower',
          'proxy',
          '--clusters',
          clusters,
          '--state-dir',
          path.join(dir, 'plain-state'),
          '--insecure-plain',
        ],
        ...['--listen', `127.0.0.1:${String(plainPort)}`, '--front-end', '127.0.0.1:0'],
      ])
      await until(() => plainProxy.logged('tower proxy started').length === 1, 'the plain proxy', {
        output: plainProxy.output,
      })
      const bothFlagged = agentTo(plainPort, ['--insecure-plain'])
      await until(() => plainProxy.logged('agent connected').length === 1, 'the plain agent', {
        output: bothFlagged.output,
      })
      assert.ok(
        !bothFlagged.output().includes(token) && !plainProxy.output().includes(token),
        'no token in the logs',
      )
    })

    it('the NetworkPolicy that keeps the kubesphere ports for ks-apiserver is one the real apiserver takes', async () => {
      const host = adminApis(testBed().kubeconfigPath, 'host')
      const policy = kubespherePortsPolicy({otherPorts: [8080, 6443, 9090]})
      const created = await host.objects.create(policy, undefined, 'All')
      const ingress = (JSON.parse(JSON.stringify(created.spec)) as {ingress: {ports: unknown[]}[]}).ingress
      assert.deepEqual(ingress[0]?.ports, [{protocol: 'TCP', port: 16000, endPort: 16999}])
    })
  })
}
