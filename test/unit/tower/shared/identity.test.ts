import assert from 'node:assert/strict'

import {
  agentImpersonationRbac,
  forbiddenClientHeader,
  identityHeaders,
  identityProblem,
  KUBESPHERE_IDENTITY,
  kubesphereIdentityRbac,
  readIdentityHeaders,
} from '../../../../src/tower/shared/identity.js'

describe('tower: the client identity between proxy and agent, and the member RBAC', () => {
  it('states an identity in headers the agent reads back, each group on its own line (a group may hold a comma)', () => {
    const identity = {user: 'alice', groups: ['dev', 'ops, night shift']}
    const headers = identityHeaders(identity)
    assert.deepEqual(headers, [
      'x-ksctl-identity-user',
      'alice',
      'x-ksctl-identity-group',
      'dev',
      'x-ksctl-identity-group',
      'ops, night shift',
    ])
    assert.deepEqual(readIdentityHeaders(['Host', 'proxy', ...headers]), identity)
    assert.deepEqual(readIdentityHeaders(['X-Ksctl-Identity-User', 'bob']), {user: 'bob', groups: []})
  })

  it('reads no identity from no user, an empty one, or two', () => {
    assert.equal(readIdentityHeaders(['x-ksctl-identity-group', 'dev']), undefined)
    assert.equal(readIdentityHeaders(['x-ksctl-identity-user', '']), undefined)
    assert.equal(
      readIdentityHeaders(['x-ksctl-identity-user', 'alice', 'x-ksctl-identity-user', 'admin']),
      undefined,
    )
  })

  it('finds what a client may not send: any Impersonate-* header, and the identity headers', () => {
    assert.equal(forbiddenClientHeader(['Accept', 'json', 'Impersonate-User', 'x']), 'Impersonate-User')
    assert.equal(forbiddenClientHeader(['impersonate-extra-scopes', 'x']), 'impersonate-extra-scopes')
    assert.equal(forbiddenClientHeader(['Impersonate-Uid', 'x']), 'Impersonate-Uid')
    assert.equal(forbiddenClientHeader(['X-Ksctl-Identity-Group', 'x']), 'X-Ksctl-Identity-Group')
    assert.equal(forbiddenClientHeader(['Accept', 'json', 'Authorization', 'Bearer x']), undefined)
  })

  it('tells which identities can be put in a certificate and forwarded', () => {
    assert.equal(identityProblem({user: 'alice', groups: ['dev']}), undefined)
    assert.equal(identityProblem(KUBESPHERE_IDENTITY), undefined)
    assert.match(identityProblem({user: '', groups: []}) ?? '', /printable ASCII, and not empty/)
    assert.match(identityProblem({user: 'zoë', groups: []}) ?? '', /printable ASCII/)
    assert.match(identityProblem({user: 'a\nb', groups: []}) ?? '', /printable ASCII/)
    assert.match(identityProblem({user: 'alice', groups: ['']}) ?? '', /each group/)
    assert.match(
      identityProblem({user: 'system:serviceaccount:kube-system:default', groups: []}) ?? '',
      /not be a service account's/,
    )
  })

  it("grants the agent's ServiceAccount impersonate on users and groups, and nothing else", () => {
    const [role, binding] = agentImpersonationRbac({
      name: 'ksctl-tower-agent',
      namespace: 'kubesphere-system',
    })
    assert.equal(role?.kind, 'ClusterRole')
    assert.deepEqual(role.rules, [{apiGroups: [''], resources: ['users', 'groups'], verbs: ['impersonate']}])
    assert.equal(binding?.kind, 'ClusterRoleBinding')
    assert.deepEqual(binding.roleRef, {
      apiGroup: 'rbac.authorization.k8s.io',
      kind: 'ClusterRole',
      name: role.metadata.name,
    })
    assert.deepEqual(binding.subjects, [
      {kind: 'ServiceAccount', name: 'ksctl-tower-agent', namespace: 'kubesphere-system'},
    ])
  })

  it("binds KubeSphere's identity, by its group, to cluster-admin", () => {
    const [binding, ...rest] = kubesphereIdentityRbac()
    assert.equal(rest.length, 0)
    assert.deepEqual(KUBESPHERE_IDENTITY, {user: 'ksctl:kubesphere', groups: ['ksctl:kubesphere']})
    assert.deepEqual(binding?.roleRef, {
      apiGroup: 'rbac.authorization.k8s.io',
      kind: 'ClusterRole',
      name: 'cluster-admin',
    })
    assert.deepEqual(binding.subjects, [
      {apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'ksctl:kubesphere'},
    ])
  })
})
