import assert from 'node:assert/strict'

import {dump} from 'js-yaml'

import {ClusterClients} from '../../../src/k8s/clients.js'
import type {KubeSphereCluster} from '../../../src/kubesphere/cluster-object.js'
import {createCertificateAuthority, issueCertificate} from '../../../src/pki/certificates.js'
import type {HostObject} from '../../../src/proxy-install/host-objects.js'
import {
  readRecord,
  recordConfigMap,
  recordObject,
  restoredObject,
  sameRecordedParts,
  type InstallRecord,
} from '../../../src/proxy-install/install-record.js'
import {proxyClusterAgents, refuseMigration} from '../../../src/proxy-install/member-agents.js'
import {towerForm} from '../../../src/proxy-install/uninstall.js'
import {startFakeClusters, type FakeClusters} from '../../helpers/fake-clusters.js'

const service = (labels: Record<string, string>, resourceVersion = '7'): HostObject => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: {name: 'mc-member1', namespace: 'kubesphere-system', uid: 'u1', resourceVersion, labels},
  spec: {selector: {app: 'tower'}, ports: [{name: 'kubernetes', port: 6443, targetPort: 6123}]},
})

describe('ksctl proxy install: the record, and whose agent a member runs', () => {
  it('keeps what it replaced in a ConfigMap, reads it back, and refuses one it cannot read, naming it', () => {
    const record: InstallRecord = {
      version: 1,
      installedAt: '2026-12-07T10:00:00.000Z',
      ksctlVersion: '0.1.0',
      replaced: [recordObject(service({app: 'mc-member1'}))],
      created: [
        {
          apiVersion: 'v1',
          kind: 'ServiceAccount',
          metadata: {name: 'ksctl-tower-proxy', namespace: 'kubesphere-system'},
        },
      ],
    }
    const configMap = recordConfigMap(record)
    assert.deepEqual(configMap.metadata.name, 'ksctl-tower-install')
    assert.deepEqual(readRecord(configMap, 'host'), record)
    assert.throws(
      () => readRecord({...configMap, data: {'record.yaml': dump({version: 2})}}, 'host'),
      /configmap kubesphere-system\/ksctl-tower-install in context "host" holds no readable install record/,
    )
  })

  it('puts back the recorded labels, annotations and spec over the current resourceVersion', () => {
    const before = service({app: 'mc-member1'})
    const now: HostObject = {
      ...service({'app.kubernetes.io/managed-by': 'ksctl-tower'}, '9'),
      spec: {selector: {'app.kubernetes.io/name': 'ksctl-tower-proxy'}, ports: []},
    }
    const restored = restoredObject(now, recordObject(before))
    assert.deepEqual(restored, {...before, metadata: {...before.metadata, resourceVersion: '9'}})
    assert.ok(sameRecordedParts(recordObject(restored), recordObject(before)))
    assert.ok(!sameRecordedParts(recordObject(now), recordObject(before)))
  })

  it("gives a Service ksctl's proxy made to Tower: Tower's selector and labels, its ports and address kept", () => {
    const made = {
      ...service({'app.kubernetes.io/managed-by': 'ksctl-tower', 'ksctl.io/cluster': 'member1', team: 'a'}),
      spec: {selector: {'app.kubernetes.io/name': 'ksctl-tower-proxy'}, clusterIP: '10.96.0.3', ports: []},
    }
    assert.deepEqual(towerForm(made), {
      ...made,
      metadata: {
        ...made.metadata,
        labels: {team: 'a', 'app.kubernetes.io/name': 'mc-member1', app: 'mc-member1'},
      },
      spec: {...made.spec, selector: {app: 'tower', 'app.kubernetes.io/name': 'tower'}},
    })
  })

  it("tells from a proxy Cluster's kubeconfig whose agent it has: none yet, Tower's (another CA, or unreadable) or ksctl's", async () => {
    const tower = await createCertificateAuthority({commonName: 'tower', validityDays: 1})
    const ksctl = await createCertificateAuthority({commonName: 'ksctl-tower-ca', validityDays: 1})
    const kubeconfigOf = async (ca: typeof tower) => {
      const client = await issueCertificate(ca, {commonName: 'kubesphere', usage: 'client'})
      const data = Buffer.from(client.certPem).toString('base64')
      return Buffer.from(dump({users: [{name: 'u', user: {'client-certificate-data': data}}]})).toString(
        'base64',
      )
    }
    const cluster = (name: string, kubeconfig?: string, type = 'proxy'): KubeSphereCluster => ({
      metadata: {name},
      spec: {joinFederation: true, connection: {type, ...(kubeconfig === undefined ? {} : {kubeconfig})}},
    })
    const clusters = [
      cluster('fresh'),
      cluster('on-tower', await kubeconfigOf(tower)),
      cluster('on-ksctl', await kubeconfigOf(ksctl)),
      cluster('garbled', Buffer.from('not: [a kubeconfig').toString('base64')),
      cluster('direct', await kubeconfigOf(tower), 'direct'),
    ]
    assert.deepEqual(
      proxyClusterAgents(clusters, ksctl.certPem).map((agent) => [agent.name, agent.agent]),
      [
        ['fresh', 'none'],
        ['garbled', 'tower'],
        ['on-ksctl', 'ksctl'],
        ['on-tower', 'tower'],
      ],
    )
    assert.deepEqual(
      proxyClusterAgents(clusters, undefined).map((agent) => agent.agent),
      ['none', 'tower', 'tower', 'tower'],
      "without ksctl's CA every kubeconfig is another CA's",
    )
  })

  describe('until the migration lands', () => {
    let clusters: FakeClusters
    before(async () => {
      clusters = await startFakeClusters()
    })
    after(async () => {
      await clusters.stop()
    })

    it("-o yaml refuses members on Tower's agent, naming each and the next step; lets a host without them through", async () => {
      const host = ClusterClients.load({kubeconfig: clusters.kubeconfigPath}).forContext('host')
      await refuseMigration.check(host, [])
      await assert.rejects(
        refuseMigration.check(host, [
          {
            name: 'member1',
            agent: 'tower',
            because: "its kubeconfig was issued by another CA than ksctl's (Tower's)",
          },
        ]),
        (error: Error & {code?: string; suggestions?: string[]}) => {
          assert.equal(error.code, 'PRECONDITION_FAILED')
          assert.match(
            error.message,
            /1 proxy cluster\(s\) on context "host" run Tower's agent, which cannot reach ksctl's proxy: member1 \(its kubeconfig/,
          )
          assert.match(error.message, /nothing was changed$/)
          assert.match(error.suggestions?.[0] ?? '', /without -o, which does/)
          assert.match(error.suggestions?.[1] ?? '', /ksctl member leave member1 --host-context host/)
          return true
        },
      )
    })
  })
})
