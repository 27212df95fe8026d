import assert from 'node:assert/strict'

import {appliedAsDesired} from '../../../src/kubesphere/cluster-apply.js'
import type {KubeSphereCluster} from '../../../src/kubesphere/cluster-object.js'

/** What `member join` applies, and what the API server keeps of it: ksctl's Apply entry in managedFields. */
const desired = {
  apiVersion: 'cluster.kubesphere.io/v1alpha1',
  kind: 'Cluster',
  metadata: {
    name: 'member1',
    labels: {'cluster.kubesphere.io/group': 'production'},
    annotations: {'kubesphere.io/creator': 'admin', 'ksctl.io/member-uid': 'uid-1'},
  },
  spec: {joinFederation: true, connection: {type: 'proxy'}},
}

const appliedFields = {
  'f:metadata': {
    'f:annotations': {'.': {}, 'f:kubesphere.io/creator': {}, 'f:ksctl.io/member-uid': {}},
    'f:labels': {'.': {}, 'f:cluster.kubesphere.io/group': {}},
  },
  'f:spec': {'f:connection': {'f:type': {}}, 'f:joinFederation': {}},
}

function stored(
  fieldsV1: object = appliedFields,
  changes: Partial<KubeSphereCluster> = {},
): KubeSphereCluster {
  return {
    ...structuredClone(desired),
    metadata: {
      ...structuredClone(desired.metadata),
      resourceVersion: '42',
      managedFields: [
        {manager: 'ksctl', operation: 'Apply', fieldsType: 'FieldsV1', fieldsV1},
        // The proxy's own writes: fields it owns are not ksctl's concern.
        {
          manager: 'tower',
          operation: 'Update',
          fieldsType: 'FieldsV1',
          fieldsV1: {'f:spec': {'f:connection': {'f:token': {}}}},
        },
      ],
    },
    spec: {...structuredClone(desired.spec), connection: {type: 'proxy', token: 'a-token'}},
    status: {uid: 'uid-1', conditions: [{type: 'Ready', status: 'True'}]},
    ...changes,
  }
}

describe('a Cluster already as member join applies it (item 32: no needless update)', () => {
  it('is recognised: same values, and ksctl owns exactly the fields it applies', () => {
    assert.equal(appliedAsDesired(stored(), desired), true)
  })

  it('is not, when a value differs', () => {
    const cluster = stored()
    cluster.metadata = {...cluster.metadata, labels: {'cluster.kubesphere.io/group': 'staging'}}
    assert.equal(appliedAsDesired(cluster, desired), false)
  })

  it('is not, when ksctl applied a field it no longer sets (the apply removes it)', () => {
    const withoutLabel = {...desired, metadata: {...desired.metadata, labels: {}}}
    delete (withoutLabel.metadata as {labels?: object}).labels
    assert.equal(appliedAsDesired(stored(), withoutLabel), false)
  })

  it("is not, when the fields are another manager's (the apply takes them over)", () => {
    assert.equal(appliedAsDesired(stored({}), desired), false)
    const created = stored()
    created.metadata = {...created.metadata, managedFields: []}
    assert.equal(appliedAsDesired(created, desired), false)
  })
})
