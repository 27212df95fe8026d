import assert from 'node:assert/strict'
import {X509Certificate} from 'node:crypto'

import {load} from 'js-yaml'

import {createCertificateAuthority, issueCertificate} from '../../../../src/pki/certificates.js'
import {
  certificateClaims,
  clusterBindingUri,
  issueClientCertificate,
} from '../../../../src/tower/proxy/client-binding.js'
import {issueKubeconfig} from '../../../../src/tower/proxy/issue-kubeconfig.js'
import {
  kubeconfigRenewalReason,
  readIssuedKubeconfig,
} from '../../../../src/tower/proxy/kubernetes/kubeconfig-renewal.js'
import {KUBESPHERE_IDENTITY} from '../../../../src/tower/shared/identity.js'

const claimsOf = (certPem: string) => certificateClaims(new X509Certificate(certPem).toLegacyObject())

describe('tower: client certificates bound to one cluster', function () {
  this.timeout(20_000)
  const ca = createCertificateAuthority({commonName: 'binding-test-ca', validityDays: 1})

  it('names the cluster in a URI SAN and the identity in CN and O', async () => {
    const issued = await issueClientCertificate(await ca, {
      cluster: 'member1',
      identity: {user: 'alice', groups: ['dev', 'ops']},
    })
    assert.equal(new X509Certificate(issued.certPem).subjectAltName, 'URI:urn:ksctl:cluster:member1')
    assert.deepEqual(claimsOf(issued.certPem), {
      identity: {user: 'alice', groups: ['dev', 'ops']},
      boundCluster: 'member1',
    })
  })

  it('binds a certificate naming no cluster, or two, to none', async () => {
    const none = await issueCertificate(await ca, {commonName: 'old', usage: 'client'})
    assert.deepEqual(claimsOf(none.certPem), {identity: {user: 'old', groups: []}, boundCluster: undefined})
    const two = await issueCertificate(await ca, {
      commonName: 'greedy',
      uris: [clusterBindingUri('a'), clusterBindingUri('b')],
      usage: 'client',
    })
    assert.equal(claimsOf(two.certPem).boundCluster, undefined)
  })

  it('reads the binding among other names, quoted ones included, as Node writes them', () => {
    const claims = certificateClaims({
      subject: {CN: 'alice'},
      subjectaltname:
        'DNS:a.example, URI:"urn:x:with, comma", URI:urn:ksctl:cluster:member1, IP Address:10.0.0.1',
    })
    assert.equal(claims.boundCluster, 'member1')
    assert.equal(
      certificateClaims({
        subject: {CN: 'a'},
        subjectaltname: 'URI:"urn:ksctl:cluster:x, URI:urn:ksctl:cluster:y"',
      }).boundCluster,
      undefined,
      'a quoted value is one name, however it reads',
    )
  })

  it('issues a kubeconfig whose certificate is bound to its cluster and carries the identity asked for', async () => {
    const text = await issueKubeconfig({
      ca: await ca,
      cluster: 'member1',
      server: 'https://10.0.0.1:6443',
      identity: {user: 'alice', groups: ['dev']},
    })
    const document = load(text) as {users: {name: string; user: {'client-certificate-data': string}}[]}
    const certPem = Buffer.from(document.users[0]?.user['client-certificate-data'] ?? '', 'base64').toString()
    assert.deepEqual(claimsOf(certPem), {identity: {user: 'alice', groups: ['dev']}, boundCluster: 'member1'})
    assert.equal(document.users[0]?.name, 'member1-alice')
    const issued = readIssuedKubeconfig(Buffer.from(text).toString('base64'))
    assert.equal(issued?.boundCluster, 'member1')
    assert.deepEqual(issued.identity, {user: 'alice', groups: ['dev']})
  })

  it("issues a Cluster's kubeconfig again when it is not bound to its cluster, or not KubeSphere's identity", async () => {
    const server = 'https://10.0.0.1:6443'
    const wanted = {server, caPem: (await ca).certPem, cluster: 'member1', identity: KUBESPHERE_IDENTITY}
    const now = new Date()
    const read = async (options: Parameters<typeof issueKubeconfig>[0]) =>
      readIssuedKubeconfig(Buffer.from(await issueKubeconfig(options)).toString('base64'))
    const good = await read({ca: await ca, cluster: 'member1', server, identity: KUBESPHERE_IDENTITY})
    assert.equal(kubeconfigRenewalReason(good, wanted, now), undefined)
    const otherCluster = await read({ca: await ca, cluster: 'member2', server, identity: KUBESPHERE_IDENTITY})
    assert.equal(kubeconfigRenewalReason(otherCluster, wanted, now), 'not bound to its cluster')
    assert.ok(good !== undefined)
    assert.equal(
      kubeconfigRenewalReason({...good, boundCluster: undefined}, wanted, now),
      'not bound to its cluster',
    )
    const someoneElse = await read({ca: await ca, cluster: 'member1', server})
    assert.equal(
      kubeconfigRenewalReason(someoneElse, wanted, now),
      'its identity is not the one KubeSphere is given',
    )
  })
})
