import assert from 'node:assert/strict'
import path from 'node:path'

import {execa} from 'execa'

import {buildImage} from '../../image/build.js'
import {unpackCached, type UnpackedImage} from '../../image/unpack.js'
import {ClusterClients} from '../../src/k8s/clients.js'
import {ClusterResource} from '../../src/k8s/resources.js'
import type {KubeSphereCluster} from '../../src/kubesphere/cluster-object.js'
import type {FixtureName} from '../../src/kubesphere-standin/fixtures.js'
import {
  migrateMembersToKsctlAgent,
  migrateMembersToTowerAgent,
  type RuntimeMigrationReport,
} from '../../src/kubesphere/runtime-migration.js'
import {createCertificateAuthority} from '../../src/pki/certificates.js'
import {KubeSphereStandIn} from '../helpers/kubesphere-standin.js'
import {routeServicePort} from '../helpers/service-route.js'
import {freeClusterPorts, freePort} from '../testbed/http.js'
import {adminApis, resetCluster} from '../testbed/seed.js'
import {snapshot} from './cluster-state.js'
import {testBed} from './hooks.js'
import {
  pointTowerServiceAt,
  routeClusterService,
  runAppliedAgent,
  startTowerTunnelStandIn,
  towerTunnelKubeconfig,
} from './ksctl-runtime-parts.js'
import {RunningRuntime, startProxyOnHost} from './running-runtime.js'

const runJs = path.resolve(import.meta.dirname, '..', '..', 'bin', 'run.js')
const NAMESPACE = 'kubesphere-system'

const editions: {edition: string; host: FixtureName; member: FixtureName}[] = [
  {edition: '3.4', host: 'ks34-host', member: 'ks34-none'},
  {edition: '4.1', host: 'ks41-host', member: 'plain'},
]

/** The member's agent Deployments, by runtime. */
async function agents(): Promise<{tower: boolean; ksctl: boolean}> {
  const member = adminApis(testBed().kubeconfigPath, 'member')
  const exists = (name: string) =>
    member.apps.readNamespacedDeployment({name, namespace: NAMESPACE}).then(
      () => true,
      () => false,
    )
  return {tower: await exists('cluster-agent'), ksctl: await exists('ksctl-tower-agent')}
}

/**
 * A member joined with Tower's agent, as KubeSphere's console or `ksctl member join --runtime tower` leaves it.
 * Tower cannot run here: the stand-in for its proxy initializes the Cluster and issues it the member's own
 * kubeconfig, which stands in for Tower's tunnel (it reaches the member, as Tower's tunnel does).
 */
async function joinWithTowersAgent(): Promise<void> {
  const standIn = new KubeSphereStandIn(testBed().kubeconfigPath, 'host', 'member', {
    clusterKubeconfig: towerTunnelKubeconfig(),
  }).start()
  try {
    const joined = await execa(
      process.execPath,
      [
        runJs,
        ...['member', 'join', 'member1', '--kubeconfig', testBed().kubeconfigPath, '--host-context', 'host'],
        ...['--member-context', 'member', '--apply', '--wait', '--timeout', '60s'],
      ],
      {reject: false, stdin: 'ignore', env: {NO_COLOR: '1'}, timeout: 120_000},
    )
    assert.equal(joined.exitCode, 0, joined.stderr)
    assert.match(joined.stderr, /^runtime tower: the host runs Tower's proxy/m)
  } finally {
    await standIn.stop()
  }
  assert.deepEqual(await agents(), {tower: true, ksctl: false})
}

function outcomes(report: RuntimeMigrationReport): Record<string, string> {
  return Object.fromEntries(report.members.map((member) => [member.name, member.outcome]))
}

describe("runtime migration: members move between Tower's agent and ksctl's through the tunnel that works", function () {
  this.timeout(300_000)
  let image: UnpackedImage
  const running = new RunningRuntime()

  before(async function () {
    this.timeout(600_000)
    image = await unpackCached((await buildImage()).archive)
  })

  afterEach(() => running.stop())

  for (const {edition, host, member} of editions) {
    it(`KubeSphere ${edition}: to ksctl's agent while the host switches to ksctl's proxy, and back to Tower's`, async () => {
      const kubeconfig = testBed().kubeconfigPath
      // Members dial the published address (the tower Service); where it leads is what the switch changes.
      const [publishedPort, listenPort, frontEndPort, metricsPort] = [
        await freePort(),
        await freePort(),
        await freePort(),
        await freePort(),
      ]
      await resetCluster(kubeconfig, 'host', host, {
        proxyPublishAddress: `http://127.0.0.1:${String(publishedPort)}`,
      })
      await resetCluster(kubeconfig, 'member', member)
      await joinWithTowersAgent()

      // ksctl's proxy runs before the switch, as an install starts it, but the published address does not lead to
      // it yet: ksctl's agent, once applied, is refused until the switch, as Tower's proxy would refuse it.
      const clusterPorts = await freeClusterPorts(2)
      running.proxy = await startProxyOnHost({
        listen: listenPort,
        frontEnd: frontEndPort,
        clusterPorts: clusterPorts.flag,
      })
      const proxyOutput = running.proxy.output
      // kube-proxy's part for mc-member1, once ksctl's proxy has given the Cluster a port of its own.
      running.cleanups.push(
        await routeClusterService('member1', {
          port: (port) => port >= clusterPorts.first && port <= clusterPorts.last,
        }),
      )

      const hostClient = ClusterClients.load({kubeconfig}).forContext('host')
      const progress: string[] = []
      let atSwitch: {tower: boolean; ksctl: boolean} | undefined
      const toKsctl = migrateMembersToKsctlAgent(hostClient, {
        switchProxy: async () => {
          atSwitch = await agents()
          await pointTowerServiceAt('ksctl')
          // The tower Service now leads to ksctl's proxy: the published address reaches it.
          running.cleanups.push(await routeServicePort('127.0.0.1', publishedPort, listenPort))
        },
        connectTimeoutMs: 90_000,
        say: (line) => progress.push(line),
      })
      // The member's kubelet runs ksctl's agent as soon as the migration has applied its Deployment.
      const agent = await runAppliedAgent({image, metricsPort, abandon: toKsctl})
      running.agent = agent
      const moved = await toKsctl
      assert.deepEqual(
        {switched: moved.switched, members: outcomes(moved)},
        {switched: true, members: {member1: 'moved'}},
        `${JSON.stringify(moved.members)}\n${progress.join('\n')}\n${agent?.output() ?? ''}\n${proxyOutput()}`,
      )
      assert.deepEqual(atSwitch, {tower: true, ksctl: true}, "Tower's agent stays until ksctl's is connected")
      assert.deepEqual(await agents(), {tower: false, ksctl: true})
      const changes = moved.members[0]?.changes ?? []
      assert.deepEqual(
        changes.filter((change) => change.action === 'create').map((change) => change.context),
        Array(changes.filter((change) => change.action === 'create').length).fill(
          "cluster member1 (Tower's tunnel)",
        ),
        "ksctl's agent was applied through Tower's tunnel",
      )
      const removed = changes.filter((change) => change.action === 'delete')
      assert.deepEqual(
        removed.map((change) => `${change.context}: ${change.summary}`),
        [
          "cluster member1 (ksctl's tunnel): delete Deployment cluster-agent",
          ...(edition === '4.1'
            ? [
                "cluster member1 (ksctl's tunnel): delete ClusterRoleBinding tower",
                "cluster member1 (ksctl's tunnel): delete ServiceAccount tower",
              ]
            : []),
        ],
      )
      const cluster = await hostClient.findCustomObject<KubeSphereCluster>(ClusterResource, 'member1')
      const token = cluster?.spec?.connection?.token ?? ''
      assert.ok(!progress.join('\n').includes(token) && !JSON.stringify(moved).includes(token), 'no token')
      assert.ok(!agent?.output().includes(token))

      // Back: Tower's agent through ksctl's tunnel, the switch back (ksctl's proxy stops; the stand-in for Tower's
      // proxy issues its tunnel once Tower's agent is there), then ksctl's agent removed through Tower's tunnel.
      let backAtSwitch: {tower: boolean; ksctl: boolean} | undefined
      const back = await migrateMembersToTowerAgent(hostClient, {
        switchProxy: async () => {
          backAtSwitch = await agents()
          await pointTowerServiceAt('tower')
          running.proxy?.process.kill('SIGTERM')
          await running.proxy?.process
          running.standIn = startTowerTunnelStandIn()
        },
        connectTimeoutMs: 60_000,
        say: (line) => progress.push(line),
      })
      assert.deepEqual(
        {switched: back.switched, members: outcomes(back)},
        {switched: true, members: {member1: 'moved'}},
        `${JSON.stringify(back.members)}\n${progress.join('\n')}`,
      )
      assert.deepEqual(backAtSwitch, {tower: true, ksctl: true})
      assert.deepEqual(await agents(), {tower: true, ksctl: false})
      const backChanges = back.members[0]?.changes ?? []
      assert.ok(
        backChanges
          .filter((change) => change.action === 'create' || change.action === 'update')
          .every((change) => change.context === "cluster member1 (ksctl's tunnel)"),
      )
      assert.ok(
        backChanges
          .filter((change) => change.action === 'delete')
          .every((change) => change.context === "cluster member1 (Tower's tunnel)"),
      )
      const memberApis = adminApis(kubeconfig, 'member')
      // Read one at a time: promises made together reject before they are awaited (an unhandled rejection).
      for (const gone of [
        () => memberApis.core.readNamespacedSecret({name: 'ksctl-tower-agent-token', namespace: NAMESPACE}),
        () => memberApis.rbac.readClusterRole({name: 'ksctl-tower-agent-impersonator'}),
        () => memberApis.rbac.readClusterRoleBinding({name: 'ksctl-kubesphere-identity'}),
      ])
        await assert.rejects(gone)
      const command =
        (await memberApis.apps.readNamespacedDeployment({name: 'cluster-agent', namespace: NAMESPACE})).spec
          ?.template.spec?.containers[0]?.command ?? []
      assert.ok(
        command.includes(`--proxy-server=http://127.0.0.1:${String(publishedPort)}`),
        command.join(' '),
      )
      assert.ok(command.includes(`--token=${token}`))
    })
  }

  it('a member that cannot be reached is named, nothing is switched, and the others are put back as they were', async () => {
    const kubeconfig = testBed().kubeconfigPath
    await resetCluster(kubeconfig, 'host', 'ks41-host', {proxyPublishAddress: 'http://127.0.0.1:30721'})
    await resetCluster(kubeconfig, 'member', 'plain')
    await joinWithTowersAgent()
    const hostClient = ClusterClients.load({kubeconfig}).forContext('host')
    // ksctl's proxy would have made its CA at its first start.
    const ca = await createCertificateAuthority({commonName: 'ksctl-tower-ca', validityDays: 2})
    await hostClient.createSecret({
      metadata: {name: 'ksctl-tower-ca', namespace: NAMESPACE},
      type: 'kubernetes.io/tls',
      data: {'tls.crt': ca.certPem, 'tls.key': ca.keyPem},
    })
    // member2's tunnel leads nowhere: its agent is gone, or its proxy's port is closed.
    const closed = await freePort()
    const unreachable = towerTunnelKubeconfig(`https://127.0.0.1:${String(closed)}`)
    await hostClient.createCustomObject(ClusterResource, {
      apiVersion: 'cluster.kubesphere.io/v1alpha1',
      kind: 'Cluster',
      metadata: {name: 'member2'},
      spec: {
        joinFederation: true,
        connection: {
          type: 'proxy',
          token: 'f'.repeat(64),
          kubeconfig: Buffer.from(unreachable).toString('base64'),
        },
      },
    })
    const [hostBefore, memberBefore] = [await snapshot('host'), await snapshot('member')]
    let switched = false
    const report = await migrateMembersToKsctlAgent(hostClient, {
      switchProxy: () => {
        switched = true
        return Promise.resolve()
      },
      requestTimeoutMs: 5000,
      connectTimeoutMs: 10_000,
      say: () => undefined,
    })
    assert.equal(switched, false)
    assert.equal(report.switched, false)
    assert.deepEqual(outcomes(report), {member1: 'put-back', member2: 'failed'})
    const failed = report.members.find((member) => member.name === 'member2')
    assert.match(failed?.error ?? '', /cluster member2 \(Tower's tunnel\)/)
    assert.match(failed?.error ?? '', /the member is as it was/)
    assert.match(
      report.members.find((member) => member.name === 'member1')?.error ?? '',
      /member2 could not be moved/,
    )
    assert.deepEqual(await snapshot('member'), memberBefore, 'member1 is as it was')
    assert.deepEqual(await snapshot('host'), hostBefore)
    assert.deepEqual(await agents(), {tower: true, ksctl: false})
  })
})
