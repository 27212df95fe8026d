import assert from 'node:assert/strict'

import {load} from 'js-yaml'

import Status from '../../../commands/status.js'
import type {ErrorJson} from '../../../src/cli/base-command.js'
import type {ClusterCondition} from '../../../src/kubesphere/cluster-object.js'
import type {HostStatus} from '../../../src/kubesphere/status.js'
import {proxyCluster} from '../../fixtures/kubesphere/agent-cluster.js'
import {LOAD_BALANCER_IP, type K8sObject} from '../../../src/kubesphere-standin/fixtures.js'
import {restPath} from '../../fixtures/kubesphere/rest-path.js'
import {seedFake, startFakeClusters, type FakeClusters} from '../../helpers/fake-clusters.js'
import {runCommand} from '../../helpers/run-command.js'

const NOW = new Date('2026-11-21T10:00:00Z')

/** `ksctl status` with its clock pinned, so that the AGE column is the same on every run. */
class PinnedClockStatus extends Status {
  protected override now(): Date {
    return NOW
  }
}

const minutesBeforeNow = (minutes: number): string =>
  new Date(NOW.getTime() - minutes * 60_000).toISOString().replace('.000Z', 'Z')

function condition(type: string, status: ClusterCondition['status'], minutesAgo: number): ClusterCondition {
  const time = minutesBeforeNow(minutesAgo)
  return {type, status, reason: type, message: '', lastUpdateTime: time, lastTransitionTime: time}
}

/** The Cluster as the API server stores it: created `minutesAgo`, with the given status. */
function withStatus(cluster: K8sObject, status: object, createdMinutesAgo: number): K8sObject {
  return {
    ...cluster,
    metadata: {
      ...cluster.metadata,
      creationTimestamp: minutesBeforeNow(createdMinutesAgo),
    } as K8sObject['metadata'],
    status,
  }
}

const DAY = 24 * 60

/** A proxy member joined 30 days ago whose agent connected and which the host reaches: Ready for 5 minutes. */
const readyMember = withStatus(
  proxyCluster('member1'),
  {
    conditions: [
      condition('Initialized', 'True', 30 * DAY),
      condition('AgentAvailable', 'True', 6),
      condition('Ready', 'True', 5),
    ],
    kubernetesVersion: 'v1.35.4',
    kubeSphereVersion: 'v3.4.1',
    uid: 'member1-kube-system-uid',
  },
  30 * DAY,
)

/** A proxy member initialized by the proxy 200 minutes ago, whose agent never connected (3 hours ago). */
const disconnectedMember = withStatus(
  proxyCluster('member2'),
  {
    conditions: [
      condition('Initialized', 'True', 200),
      {...condition('AgentAvailable', 'False', 180), lastUpdateTime: minutesBeforeNow(190)},
    ],
  },
  200,
)

/**
 * A Ready proxy member as Tower v0.2.1 leaves it after its agent reconnected a moment ago: the whole Cluster
 * rewritten through a type without kubeSphereVersion, uid and configz.
 */
const rewrittenByTower = withStatus(
  proxyCluster('member3'),
  {
    conditions: [
      condition('Initialized', 'True', 9 * DAY),
      condition('Ready', 'True', 9 * DAY),
      condition('AgentAvailable', 'True', 0),
    ],
    kubernetesVersion: 'v1.26.5',
  },
  9 * DAY,
)

/** A directly connected cluster, created 400 days ago and Ready for 12 days. */
const directCluster = withStatus(
  proxyCluster('idc-beijing', {type: 'direct', token: ''}),
  {
    conditions: [condition('Federated', 'True', 12 * DAY + 30), condition('Ready', 'True', 12 * DAY)],
    kubernetesVersion: 'v1.30.2',
    kubeSphereVersion: 'v3.4.1',
  },
  400 * DAY,
)

describe('ksctl status', () => {
  let clusters: FakeClusters

  beforeEach(async () => {
    clusters = await startFakeClusters()
  })

  afterEach(async () => {
    await clusters.stop()
  })

  const status = (...argv: string[]) =>
    runCommand<HostStatus>(PinnedClockStatus, ['--kubeconfig', clusters.kubeconfigPath, ...argv])
  const seedHostWithMembers = () => {
    seedFake(clusters.host, 'ks34-host')
    for (const cluster of [readyMember, disconnectedMember, rewrittenByTower, directCluster]) {
      clusters.host.put(restPath(cluster), cluster)
    }
  }

  it('lists the host and its clusters in a table, AGE the age of each Cluster, and says what is unknown and why', async () => {
    seedHostWithMembers()
    const {stdout, stderr, exitCode} = await status('--context', 'host')
    assert.equal(exitCode, 0, stderr)
    const notYet = "not reported yet: the host's cluster controller writes it once it reaches the cluster"
    assert.equal(
      stdout,
      [
        'Host:          host (context host)',
        `Proxy address: http://${LOAD_BALANCER_IP}:8080 (tower LoadBalancer)`,
        '',
        'NAME          CONNECTION   AGENTAVAILABLE   READY     KUBERNETES   KUBESPHERE   AGE',
        'host (host)   direct       -                Unknown   unknown      unknown      -',
        'idc-beijing   direct       -                True      v1.30.2      v3.4.1       1y',
        'member1       proxy        True             True      v1.35.4      v3.4.1       30d',
        'member2       proxy        False            Unknown   unknown      unknown      3h',
        'member3       proxy        True             True      v1.26.5      unknown      9d',
        '',
        `host: KUBERNETES unknown: ${notYet}`,
        `host: KUBESPHERE unknown: ${notYet}`,
        `member2: KUBERNETES unknown: ${notYet}`,
        `member2: KUBESPHERE unknown: ${notYet}`,
        'member3: KUBESPHERE unknown: not reported since the proxy last rewrote the Cluster: Tower v0.2.1 drops it ' +
          "when an agent connects or disconnects, and the host's cluster controller writes it again at its next resync",
        "AGENTAVAILABLE is what the proxy reports, not verified: it clears the condition only when an agent's " +
          'connection closes, so a hung agent still shows True; ksctl doctor NAME --host-context host sends a ' +
          'request through the tunnel',
        '',
      ].join('\n'),
    )
    assert.deepEqual(clusters.host.writes(), [])
    assert.deepEqual(clusters.member.requests, [])
  })

  it('returns a typed document with --json', async () => {
    seedHostWithMembers()
    const {stdout, exitCode, result} = await status('--context', 'host', '--json')
    assert.equal(exitCode, 0)
    const notYet = "not reported yet: the host's cluster controller writes it once it reaches the cluster"
    const expected: HostStatus = {
      context: 'host',
      hostClusterName: 'host',
      proxyAddress: {effective: `http://${LOAD_BALANCER_IP}:8080`, source: 'load-balancer'},
      clusters: [
        {
          name: 'host',
          host: true,
          connectionType: 'direct',
          agentConnected: null,
          ready: 'Unknown',
          unknown: {kubernetesVersion: notYet, kubesphereVersion: notYet},
          conditions: {},
        },
        {
          name: 'idc-beijing',
          host: false,
          connectionType: 'direct',
          agentConnected: null,
          ready: 'True',
          kubernetesVersion: 'v1.30.2',
          kubesphereVersion: 'v3.4.1',
          unknown: {},
          createdAt: '2025-10-17T10:00:00Z',
          lastConditionChange: '2026-11-09T10:00:00Z',
          conditions: {Federated: 'True', Ready: 'True'},
        },
        {
          name: 'member1',
          host: false,
          connectionType: 'proxy',
          agentConnected: true,
          ready: 'True',
          kubernetesVersion: 'v1.35.4',
          kubesphereVersion: 'v3.4.1',
          unknown: {},
          createdAt: '2026-10-22T10:00:00Z',
          lastConditionChange: '2026-11-21T09:55:00Z',
          conditions: {Initialized: 'True', AgentAvailable: 'True', Ready: 'True'},
        },
        {
          name: 'member2',
          host: false,
          connectionType: 'proxy',
          agentConnected: false,
          ready: 'Unknown',
          unknown: {kubernetesVersion: notYet, kubesphereVersion: notYet},
          createdAt: '2026-11-21T06:40:00Z',
          lastConditionChange: '2026-11-21T07:00:00Z',
          conditions: {Initialized: 'True', AgentAvailable: 'False'},
        },
        {
          name: 'member3',
          host: false,
          connectionType: 'proxy',
          agentConnected: true,
          ready: 'True',
          kubernetesVersion: 'v1.26.5',
          unknown: {
            kubesphereVersion:
              'not reported since the proxy last rewrote the Cluster: Tower v0.2.1 drops it when an agent ' +
              "connects or disconnects, and the host's cluster controller writes it again at its next resync",
          },
          createdAt: '2026-11-12T10:00:00Z',
          lastConditionChange: '2026-11-21T10:00:00Z',
          conditions: {Initialized: 'True', Ready: 'True', AgentAvailable: 'True'},
        },
      ],
    }
    assert.deepEqual(result, expected)
    assert.deepEqual(JSON.parse(stdout), expected)
  })

  it('prints the same document as YAML with -o yaml', async () => {
    seedHostWithMembers()
    const {stdout, exitCode, result} = await status('--context', 'host', '-o', 'yaml')
    assert.equal(exitCode, 0)
    assert.deepEqual(load(stdout), result)
  })

  it('says when a 4.1 host publishes no proxy address, and leaves it out of the document', async () => {
    seedFake(clusters.host, 'ks41-host')
    const {stdout, exitCode, result} = await status('--context', 'host')
    assert.equal(exitCode, 0)
    assert.match(stdout, /^Proxy address: not set \(members cannot be given an agent manifest yet\)$/m)
    assert.equal(result?.proxyAddress, undefined)
    assert.deepEqual(
      result?.clusters.map((cluster) => cluster.name),
      ['host'],
    )
  })

  describe('refuses a context that is not a KubeSphere host', () => {
    const cases: [string, 'ks34-none' | 'ks34-member' | 'plain', RegExp][] = [
      ['a 3.4 cluster without a role', 'ks34-none', /context "host" is not a KubeSphere host \(role: none\)/],
      ['a member', 'ks34-member', /context "host" is not a KubeSphere host \(role: member\)/],
      ['a cluster without KubeSphere', 'plain', /is not a KubeSphere host \(KubeSphere not installed\)/],
    ]
    for (const [label, fixture, message] of cases) {
      it(label, async () => {
        seedFake(clusters.host, fixture)
        const {stdout, stderr, exitCode} = await status('--context', 'host')
        assert.equal(exitCode, 1)
        assert.equal(stdout, '')
        assert.match(stderr, message)
        assert.match(stderr, /→ make it the host first: ksctl host init --context host$/m)
        assert.deepEqual(clusters.host.writes(), [])
      })
    }

    it('as a JSON error with --json', async () => {
      seedFake(clusters.host, 'ks34-none')
      const {stdout, exitCode} = await status('--context', 'host', '--json')
      assert.equal(exitCode, 1)
      const {error} = JSON.parse(stdout) as ErrorJson
      assert.equal(error.code, 'PRECONDITION_FAILED')
      assert.equal(error.context, 'host')
      assert.match(error.message, /is not a KubeSphere host/)
    })
  })
})
