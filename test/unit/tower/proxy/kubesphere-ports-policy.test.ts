import assert from 'node:assert/strict'

import {KsctlError} from '../../../../src/errors.js'
import {kubespherePortsPolicy} from '../../../../src/tower/proxy/kubesphere-ports-policy.js'

describe('tower proxy: the kubesphere ports kept for ks-apiserver', () => {
  it("lets only ks-apiserver's pods reach the kubesphere ports, and leaves every other port of the proxy open", () => {
    const policy = kubespherePortsPolicy({otherPorts: [8080, 6443, 9090, 8080]})
    assert.equal(policy.kind, 'NetworkPolicy')
    assert.equal(policy.metadata.namespace, 'kubesphere-system')
    assert.deepEqual(policy.spec, {
      podSelector: {matchLabels: {'app.kubernetes.io/name': 'ksctl-tower-proxy'}},
      policyTypes: ['Ingress'],
      ingress: [
        {
          from: [{podSelector: {matchLabels: {app: 'ks-apiserver'}}}],
          ports: [{protocol: 'TCP', port: 16000, endPort: 16999}],
        },
        {
          ports: [
            {protocol: 'TCP', port: 6000, endPort: 6999},
            {protocol: 'TCP', port: 8080},
            {protocol: 'TCP', port: 6443},
            {protocol: 'TCP', port: 9090},
          ],
        },
      ],
    })
  })

  it('follows --cluster-ports, and refuses a port of the proxy among the kubesphere ports', () => {
    const policy = kubespherePortsPolicy({clusterPorts: {first: 7000, last: 7099}, otherPorts: [8080]})
    const [kubesphere] = (policy.spec as {ingress: {ports: unknown[]}[]}).ingress
    assert.deepEqual(kubesphere?.ports, [{protocol: 'TCP', port: 17000, endPort: 17099}])
    assert.throws(
      () => kubespherePortsPolicy({otherPorts: [16443]}),
      (error: unknown) =>
        error instanceof KsctlError &&
        /port 16443 of the proxy is among the kubesphere ports 16000-16999/.test(error.message),
    )
  })
})
