import assert from 'node:assert/strict'

import {clusterStatuses, formatAge} from '../../../src/kubesphere/status.js'

describe('status rows', () => {
  const now = new Date('2026-11-21T10:00:00Z')
  const ago = (seconds: number) => new Date(now.getTime() - seconds * 1000).toISOString()

  const ages: [string, string | undefined, string][] = [
    ['no timestamp', undefined, '-'],
    ['a timestamp that is not one', 'yesterday', '-'],
    ['a clock a little ahead of this one', ago(-30), '0s'],
    ['59 seconds', ago(59), '59s'],
    ['one minute', ago(60), '1m'],
    ['59 minutes 59 seconds', ago(3599), '59m'],
    ['one hour', ago(3600), '1h'],
    ['23 hours 59 minutes', ago(86_399), '23h'],
    ['one day', ago(86_400), '1d'],
    ['364 days', ago(364 * 86_400), '364d'],
    ['two years', ago(2 * 365 * 86_400), '2y'],
  ]
  for (const [label, since, age] of ages) {
    it(`shows ${label} as ${age}`, () => {
      assert.equal(formatAge(since, now), age)
    })
  }

  it('takes the newest of both timestamps of every condition, as the API server wrote it', () => {
    const [row] = clusterStatuses([
      {
        apiVersion: 'cluster.kubesphere.io/v1alpha1',
        kind: 'Cluster',
        metadata: {name: 'member1'},
        spec: {connection: {type: 'proxy'}},
        status: {
          conditions: [
            {type: 'Ready', status: 'False', lastTransitionTime: '2026-11-20T10:00:00Z'},
            {
              type: 'AgentAvailable',
              status: 'False',
              lastTransitionTime: '2026-11-19T10:00:00Z',
              lastUpdateTime: '2026-11-21T09:00:00+00:00',
            },
          ],
        },
      },
    ])
    assert.equal(row?.lastConditionChange, '2026-11-21T09:00:00+00:00')
    assert.equal(row?.agentConnected, false)
    assert.equal(row?.ready, 'False')
  })

  it('counts AGE from the creation of the Cluster, whichever way the client decoded it', () => {
    const [typed, raw] = clusterStatuses([
      {
        apiVersion: 'cluster.kubesphere.io/v1alpha1',
        kind: 'Cluster',
        metadata: {name: 'a', creationTimestamp: new Date('2026-11-01T10:00:00Z')},
      },
      {
        apiVersion: 'cluster.kubesphere.io/v1alpha1',
        kind: 'Cluster',
        // A custom object's timestamps stay JSON strings: the client decodes only the types it knows.
        metadata: {name: 'b', creationTimestamp: '2026-11-20T10:00:00Z' as unknown as Date},
        status: {conditions: [{type: 'Ready', status: 'True', lastTransitionTime: ago(1)}]},
      },
    ])
    assert.equal(formatAge(typed?.createdAt, now), '20d')
    assert.equal(formatAge(raw?.createdAt, now), '1d')
  })

  it('says why a version of a Ready cluster is unknown when the controller could not read it', () => {
    const [row] = clusterStatuses([
      {
        apiVersion: 'cluster.kubesphere.io/v1alpha1',
        kind: 'Cluster',
        metadata: {name: 'a'},
        spec: {connection: {type: 'direct'}},
        status: {conditions: [{type: 'Ready', status: 'True'}], kubernetesVersion: 'v1.30.2'},
      },
    ])
    assert.deepEqual(row?.unknown, {
      kubesphereVersion:
        "not reported: the host's cluster controller reached the cluster but could not read it (see its log)",
    })
  })

  it('treats a Cluster without a connection type as direct, as KubeSphere does', () => {
    const [row] = clusterStatuses([
      {apiVersion: 'cluster.kubesphere.io/v1alpha1', kind: 'Cluster', metadata: {name: 'a'}},
    ])
    const notYet = "not reported yet: the host's cluster controller writes it once it reaches the cluster"
    assert.deepEqual(row, {
      name: 'a',
      host: false,
      connectionType: 'direct',
      agentConnected: null,
      ready: 'Unknown',
      unknown: {kubernetesVersion: notYet, kubesphereVersion: notYet},
      conditions: {},
    })
  })
})
