import assert from 'node:assert/strict'

import type {HostInitResult} from '../../src/kubesphere/host-init.js'
import type {SetProxyAddressResult} from '../../src/kubesphere/proxy-address.js'
import type {MemberJoinOutput} from '../../commands/member/join.js'
import type {MemberLeaveResult} from '../../src/kubesphere/member-leave.js'
import type {HostStatus} from '../../src/kubesphere/status.js'
import type {FixtureName, FixtureOptions} from '../../src/kubesphere-standin/fixtures.js'
import {secrets} from '../../src/kubesphere-standin/fixtures.js'
import type {ProcessOutcome} from '../helpers/ksctl-process.js'
import {KubeSphereStandIn} from '../helpers/kubesphere-standin.js'
import {denyWrites} from '../testbed/admission.js'
import {adminApis, resetCluster} from '../testbed/seed.js'
import {bothClusters, run, snapshot} from './cluster-state.js'
import {testBed} from './hooks.js'

const NAMESPACE = 'kubesphere-system'

async function joinedState(name: string): Promise<object> {
  const host = adminApis(testBed().kubeconfigPath, 'host')
  const member = adminApis(testBed().kubeconfigPath, 'member')
  const cluster = (await host.custom.getClusterCustomObject({
    group: 'cluster.kubesphere.io',
    version: 'v1alpha1',
    plural: 'clusters',
    name,
  })) as {
    metadata: {labels?: object; annotations?: object}
    spec: {joinFederation: boolean; connection: {type: string; token: string}}
  }
  const agent = await member.apps.readNamespacedDeployment({name: 'cluster-agent', namespace: NAMESPACE})
  const command = agent.spec?.template.spec?.containers[0]?.command ?? []
  const installer = (await member.custom
    .getNamespacedCustomObject({
      group: 'installer.kubesphere.io',
      version: 'v1alpha1',
      plural: 'clusterconfigurations',
      namespace: NAMESPACE,
      name: 'ks-installer',
    })
    .catch(() => undefined)) as {spec: object} | undefined
  return {
    cluster: {
      labels: cluster.metadata.labels,
      annotations: cluster.metadata.annotations,
      joinFederation: cluster.spec.joinFederation,
      type: cluster.spec.connection.type,
    },
    agentCommand: command.map((arg) =>
      arg === `--token=${cluster.spec.connection.token}` ? '--token=<the Cluster token>' : arg,
    ),
    memberInstallerSpec: installer?.spec,
  }
}

// The type parameter only names what the caller expects the command's --json document to be.
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters
function json<T = unknown>(outcome: ProcessOutcome): T {
  assert.equal(outcome.exitCode, 0, outcome.stderr)
  return JSON.parse(outcome.stdout) as T
}

const editions: {edition: string; host: FixtureName; hostOptions: FixtureOptions; member: FixtureName}[] = [
  {edition: '3.4', host: 'ks34-host', hostOptions: {}, member: 'ks34-none'},
  {edition: '4.1', host: 'ks41-host', hostOptions: {}, member: 'plain'},
]

for (const {edition, host, hostOptions, member} of editions) {
  describe(`join flow on KubeSphere ${edition}, real apiservers`, function () {
    this.timeout(180_000)
    let standIn: KubeSphereStandIn | undefined
    const join = ['member', 'join', 'member1', '--host-context', 'host', '--member-context', 'member']
    const leave = ['member', 'leave', 'member1', '--host-context', 'host', '--member-context', 'member']

    beforeEach(async () => {
      await resetCluster(testBed().kubeconfigPath, 'host', host, hostOptions)
      await resetCluster(testBed().kubeconfigPath, 'member', member)
    })

    afterEach(async () => {
      await standIn?.stop()
      standIn = undefined
    })

    /** 4.1's fixture has a NodePort tower and no address; 3.4's has a LoadBalancer address already. */
    const publishProxyAddress = async () => {
      if (edition === '4.1')
        json(await run(['proxy', 'set-address', 'http://127.0.0.1:30721', '--context', 'host', '--json']))
    }

    const startStandIn = () => {
      standIn = new KubeSphereStandIn(testBed().kubeconfigPath, 'host', 'member').start()
    }

    it('host init: succeeds, then changes nothing on a re-run or a dry run', async () => {
      const before = await bothClusters()
      const dry = json<HostInitResult>(
        await run(['host', 'init', '--context', 'host', '--dry-run', '--json']),
      )
      assert.deepEqual(await bothClusters(), before)
      const first = json<HostInitResult>(await run(['host', 'init', '--context', 'host', '--json']))
      assert.equal(first.alreadyHost, true, 'the fixture is a host already')
      assert.deepEqual(
        dry.changes.filter((c) => c.changed),
        [],
      )
      assert.deepEqual(await bothClusters(), before)
    })

    it('proxy set-address: writes the address where the edition reads it, once', async () => {
      const address = 'http://127.0.0.1:30721'
      const before = await bothClusters()
      const dry = await run(['proxy', 'set-address', address, '--context', 'host', '--dry-run'])
      assert.equal(dry.exitCode, 0, dry.stderr)
      assert.match(dry.stdout, /^\+.*proxyPublishAddress: http:\/\/127\.0\.0\.1:30721$/m)
      assert.deepEqual(await bothClusters(), before)
      const set = json<SetProxyAddressResult>(
        await run(['proxy', 'set-address', address, '--context', 'host', '--json']),
      )
      assert.equal(set.changes.filter((c) => c.changed).length, 1)
      assert.deepEqual(set.restarted, edition === '4.1' ? ['ks-apiserver'] : [])
      const after = await bothClusters()
      const again = json<SetProxyAddressResult>(
        await run(['proxy', 'set-address', address, '--context', 'host', '--json']),
      )
      assert.deepEqual(
        again.changes.filter((c) => c.changed),
        [],
      )
      assert.deepEqual(again.restarted, [])
      assert.deepEqual(await bothClusters(), after)
      const info = json<{proxyAddress: {effective: string}}>(
        await run(['info', '--context', 'host', '--json']),
      )
      assert.equal(info.proxyAddress.effective, address)
    })

    it('member join: dry run changes nothing, the join reaches Ready, a re-run changes nothing', async () => {
      await publishProxyAddress()
      const before = await bothClusters()
      const dry = await run([...join, '--apply', '--dry-run'])
      assert.equal(dry.exitCode, 0, dry.stderr)
      assert.match(
        dry.stdout,
        /^would change host: clusters\.cluster\.kubesphere\.io member1 \(create Cluster member1\)$/m,
      )
      assert.ok(!dry.stdout.includes(secrets.hostJwtSecret) && !dry.stdout.includes(secrets.ks41JwtSecret))
      assert.deepEqual(await bothClusters(), before)

      startStandIn()
      const joined = await run([
        ...join,
        '--apply',
        '--wait',
        '--timeout',
        '60s',
        '--json',
        '--label',
        'cluster.kubesphere.io/group=production',
      ])
      const result = json<MemberJoinOutput>(joined)
      assert.equal(result.ready, true)
      assert.deepEqual(result.conditions, {Initialized: 'True', AgentAvailable: 'True', Ready: 'True'})
      await standIn?.stop()
      const after = await bothClusters()
      const again = json<MemberJoinOutput>(
        await run([...join, '--apply', '--json', '--label', 'cluster.kubesphere.io/group=production']),
      )
      assert.deepEqual(
        again.changes.filter((c) => c.changed).map((c) => c.diff),
        [],
      )
      assert.deepEqual(await bothClusters(), after)
    })

    it('member join: a failure at each step, then a re-run, ends as an uninterrupted join', async () => {
      await publishProxyAddress()
      startStandIn()
      json(await run([...join, '--apply', '--wait', '--timeout', '60s', '--json']))
      const uninterrupted = await joinedState('member1')
      const refused = (error: unknown) =>
        String((error as {body?: unknown}).body ?? error).includes('refused by the test')
      const memberApis = adminApis(testBed().kubeconfigPath, 'member')
      const hostApis = adminApis(testBed().kubeconfigPath, 'host')
      const steps = [
        {
          step: 'registering the Cluster on the host',
          context: 'host',
          denied: {group: 'cluster.kubesphere.io', resource: 'clusters', operations: ['CREATE' as const]},
          probe: () =>
            hostApis.custom
              .createClusterCustomObject({
                group: 'cluster.kubesphere.io',
                version: 'v1alpha1',
                plural: 'clusters',
                body: {
                  apiVersion: 'cluster.kubesphere.io/v1alpha1',
                  kind: 'Cluster',
                  metadata: {name: 'probe'},
                },
                dryRun: 'All',
              })
              .then(() => false, refused),
        },
        {
          step: 'applying the agent on the member',
          context: 'member',
          denied: {group: 'apps', resource: 'deployments', operations: ['CREATE' as const]},
          probe: () =>
            memberApis.apps
              .createNamespacedDeployment({
                namespace: 'default',
                dryRun: 'All',
                body: {
                  metadata: {name: 'probe'},
                  spec: {
                    selector: {matchLabels: {a: 'b'}},
                    template: {metadata: {labels: {a: 'b'}}, spec: {containers: [{name: 'c', image: 'i'}]}},
                  },
                },
              })
              .then(() => false, refused),
        },
        ...(edition === '3.4'
          ? [
              {
                step: 'copying the jwtSecret on the member',
                context: 'member',
                denied: {
                  group: 'installer.kubesphere.io',
                  resource: 'clusterconfigurations',
                  operations: ['UPDATE' as const],
                },
                probe: () =>
                  memberApis.custom
                    .patchNamespacedCustomObject(
                      {
                        group: 'installer.kubesphere.io',
                        version: 'v1alpha1',
                        plural: 'clusterconfigurations',
                        namespace: NAMESPACE,
                        name: 'ks-installer',
                        body: [{op: 'test', path: '/kind', value: 'ClusterConfiguration'}],
                        dryRun: 'All',
                      },
                      {headers: {'Content-Type': 'application/json-patch+json'}} as never,
                    )
                    .then(() => false, refused),
              },
            ]
          : []),
      ]
      for (const {step, context, denied, probe} of steps) {
        await resetCluster(testBed().kubeconfigPath, 'host', host, hostOptions)
        await resetCluster(testBed().kubeconfigPath, 'member', member)
        await publishProxyAddress()
        const lift = await denyWrites(testBed().kubeconfigPath, context, 'ksctl-test-deny', denied, probe)
        const failed = await run([...join, '--apply', '--wait', '--timeout', '60s'])
        await lift()
        assert.equal(failed.exitCode, 1, `${step}: ${failed.stderr}`)
        assert.match(failed.stderr, /refused by the test/, step)
        const rerun = await run([...join, '--apply', '--wait', '--timeout', '60s'])
        assert.equal(rerun.exitCode, 0, `${step}: ${rerun.stderr}`)
        assert.deepEqual(await joinedState('member1'), uninterrupted, step)
      }
    })

    it('status, doctor, agent render and member leave after a join; leave again and its dry run change nothing', async () => {
      await publishProxyAddress()
      startStandIn()
      json(await run([...join, '--apply', '--wait', '--timeout', '60s', '--json']))
      await standIn?.stop()

      const status = json<HostStatus>(await run(['status', '--context', 'host', '--json']))
      const row = status.clusters.find((cluster) => cluster.name === 'member1')
      assert.deepEqual(
        {connectionType: row?.connectionType, agentConnected: row?.agentConnected, ready: row?.ready},
        {connectionType: 'proxy', agentConnected: true, ready: 'True'},
      )

      const doctor = await run(['doctor', 'member1', '--host-context', 'host', '--member-context', 'member'])
      assert.equal(doctor.exitCode, 0, doctor.stdout)
      // The stand-in plays Tower's conditions, not its proxy: nothing proves the proxy address or the tunnel.
      assert.match(
        doctor.stdout,
        /^cluster "member1": no check failed, but it is not proven healthy: proxy address \(warning\), tunnel \(warning\)$/m,
      )

      const rendered = await run(['agent', 'render', 'member1', '--context', 'host'])
      assert.equal(rendered.exitCode, 0, rendered.stderr)
      const agent = await adminApis(testBed().kubeconfigPath, 'member').apps.readNamespacedDeployment({
        name: 'cluster-agent',
        namespace: NAMESPACE,
      })
      for (const arg of agent.spec?.template.spec?.containers[0]?.command ?? [])
        assert.ok(rendered.stdout.includes(`- ${arg}`), arg)

      const before = await bothClusters()
      const dry = json<MemberLeaveResult>(await run([...leave, '--dry-run', '--json']))
      assert.ok(dry.changes.some((change) => change.changed))
      assert.deepEqual(await bothClusters(), before)
      const noTerminal = await run([...leave])
      assert.equal(noTerminal.exitCode, 2)
      assert.match(noTerminal.stderr, /--yes/)
      assert.deepEqual(await bothClusters(), before)

      json(await run([...leave, '--yes', '--json']))
      const hostApis = adminApis(testBed().kubeconfigPath, 'host')
      await assert.rejects(
        hostApis.custom.getClusterCustomObject({
          group: 'cluster.kubesphere.io',
          version: 'v1alpha1',
          plural: 'clusters',
          name: 'member1',
        }),
      )
      await assert.rejects(
        adminApis(testBed().kubeconfigPath, 'member').apps.readNamespacedDeployment({
          name: 'cluster-agent',
          namespace: NAMESPACE,
        }),
      )
      const left = await bothClusters()
      const again = json<MemberLeaveResult>(await run([...leave, '--yes', '--json']))
      assert.deepEqual(
        again.changes.filter((change) => change.changed),
        [],
      )
      assert.deepEqual(await bothClusters(), left)
    })

    it('member join: a proxy that never answers fails fast with what to check, and the re-run finishes', async () => {
      await publishProxyAddress()
      const timedOut = await run([...join, '--apply', '--wait', '--timeout', '3s'])
      assert.equal(timedOut.exitCode, 1)
      assert.match(
        timedOut.stderr,
        /the tower proxy did not initialize cluster "member1" within 3s in context "host"/,
      )
      assert.match(timedOut.stderr, /kubectl --context host -n kubesphere-system get deployment tower/)
      startStandIn()
      const rerun = json<MemberJoinOutput>(
        await run([...join, '--apply', '--wait', '--timeout', '60s', '--json']),
      )
      assert.equal(rerun.ready, true)
    })
  })
}

describe('host init on a 3.4 cluster that is not a host yet, real apiservers', function () {
  this.timeout(120_000)

  it('sets the role, follows the installer until multicluster is enabled, and a re-run changes nothing', async () => {
    await resetCluster(testBed().kubeconfigPath, 'host', 'ks34-none')
    const before = await snapshot('host')
    const dry = json<HostInitResult>(
      await run(['host', 'init', '--context', 'host', '--name', 'beijing', '--dry-run', '--json']),
    )
    assert.match(dry.changes[0]?.diff ?? '', /^\+ {4}hostClusterName: beijing$/m)
    assert.deepEqual(await snapshot('host'), before)
    const installer = new KubeSphereStandIn(testBed().kubeconfigPath, 'host', undefined).start()
    try {
      const outcome = await run([
        'host',
        'init',
        '--context',
        'host',
        '--name',
        'beijing',
        '--wait',
        '--timeout',
        '60s',
      ])
      assert.equal(outcome.exitCode, 0, outcome.stderr)
      assert.match(outcome.stderr, /^multicluster: enabled$/m)
      assert.match(outcome.stdout, /the host "beijing" is ready/)
    } finally {
      await installer.stop()
    }
    const after = await snapshot('host')
    const again = json<HostInitResult>(
      await run(['host', 'init', '--context', 'host', '--name', 'beijing', '--json']),
    )
    assert.equal(again.alreadyHost, true)
    assert.deepEqual(await snapshot('host'), after)
  })
})

describe('bad input on the real apiservers leaves both clusters unchanged', function () {
  this.timeout(120_000)

  before(async () => {
    await resetCluster(testBed().kubeconfigPath, 'host', 'ks34-host')
    await resetCluster(testBed().kubeconfigPath, 'member', 'ks34-none')
  })

  const cases: [string, string[], number, RegExp][] = [
    [
      'an invalid member name',
      ['member', 'join', 'Member1', '--host-context', 'host', '--member-context', 'member', '--apply'],
      2,
      /NAME "Member1" is not valid/,
    ],
    [
      'the host as its own member',
      ['member', 'join', 'member1', '--host-context', 'host', '--member-context', 'host', '--apply'],
      1,
      /are the same cluster/,
    ],
    [
      "a member that is not a 3.x host's kind",
      ['member', 'join', 'member1', '--host-context', 'member', '--member-context', 'host', '--apply'],
      1,
      /context "member" is not a KubeSphere host/,
    ],
    [
      'an unknown host context',
      ['member', 'join', 'member1', '--host-context', 'prod', '--member-context', 'member'],
      2,
      /context "prod" not found/,
    ],
    [
      'a malformed proxy address',
      ['proxy', 'set-address', 'http://127.0.0.1', '--context', 'host'],
      2,
      /must be http\(s\):\/\/host:port/,
    ],
    [
      'proxy set-address on a non-host',
      ['proxy', 'set-address', 'http://127.0.0.1:30721', '--context', 'member'],
      1,
      /is not a KubeSphere host \(role: none\)/,
    ],
    [
      'host init with an invalid name',
      ['host', 'init', '--context', 'host', '--name', 'HOST'],
      2,
      /--name "HOST" is not a valid host cluster name/,
    ],
    [
      'host init renaming a host',
      ['host', 'init', '--context', 'host', '--name', 'other'],
      1,
      /renaming it to "other" is refused/,
    ],
    [
      'the RBAC-limited user',
      ['host', 'init', '--context', 'member-limited'],
      1,
      /^error: forbidden: cannot get clusterconfigurations\.installer\.kubesphere\.io kubesphere-system\/ks-installer in context "member-limited"/m,
    ],
  ]
  for (const [name, args, exit, message] of cases) {
    it(name, async () => {
      const before = await bothClusters()
      const outcome = await run(args)
      assert.equal(outcome.exitCode, exit, outcome.stderr)
      assert.match(outcome.stderr, message)
      assert.deepEqual(await bothClusters(), before)
    })
  }
})
