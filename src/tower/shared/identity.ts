import type {ManifestObject} from '../../k8s/manifest-objects.js'

/**
 * Who asks, on the member: the user and groups of the client certificate the proxy verified (CN and O, as
 * kube-apiserver reads a client certificate). The proxy sends it along with each request on the kubernetes
 * destination; the agent relays it with Kubernetes impersonation, so that the member's RBAC and audit log apply
 * to the client, never to the agent's own account.
 */
export interface ClientIdentity {
  user: string
  groups: string[]
}

/**
 * The identity of KubeSphere itself: the kubeconfig the proxy writes into `Cluster.spec.connection.kubeconfig`,
 * which the host's ks-apiserver and ks-controller-manager use to manage the member. A name of ksctl's own (not
 * `system:`, which Kubernetes reserves) that a member's audit log shows as what it is.
 */
export const KUBESPHERE_IDENTITY: ClientIdentity = {user: 'ksctl:kubesphere', groups: ['ksctl:kubesphere']}

/**
 * The request headers that carry the identity from the proxy to the agent (one user, one header per group). Names
 * of ksctl's own rather than Impersonate-*: the agent can then tell the proxy's word from a client's attempt to
 * impersonate, which it refuses.
 */
export const identityUserHeader = 'x-ksctl-identity-user'
export const identityGroupHeader = 'x-ksctl-identity-group'

/** The Kubernetes impersonation headers (Impersonate-User, -Group, -Uid, -Extra-*), lower case. */
export function isImpersonationHeader(lowerCaseName: string): boolean {
  return lowerCaseName.startsWith('impersonate-')
}

/** The headers a client must never send itself: impersonation, and the identity only the proxy may state. */
export function clientMayNotSend(lowerCaseName: string): boolean {
  return (
    isImpersonationHeader(lowerCaseName) ||
    lowerCaseName === identityUserHeader ||
    lowerCaseName === identityGroupHeader
  )
}

/** The first header of flat `[name, value, …]` a client may not send, as the client wrote its name. */
export function forbiddenClientHeader(rawHeaders: string[]): string | undefined {
  for (let index = 0; index < rawHeaders.length; index += 2) {
    const name = rawHeaders[index] ?? ''
    if (clientMayNotSend(name.toLowerCase())) return name
  }
  return undefined
}

/** Flat `[name, value, …]` stating `identity` to the agent. */
export function identityHeaders(identity: ClientIdentity): string[] {
  return [
    identityUserHeader,
    identity.user,
    ...identity.groups.flatMap((group) => [identityGroupHeader, group]),
  ]
}

/**
 * The identity the proxy stated in flat `[name, value, …]` (each group on its own line: a group name may hold a
 * comma), or undefined when it stated none, or more than one user.
 */
export function readIdentityHeaders(rawHeaders: string[]): ClientIdentity | undefined {
  const users: string[] = []
  const groups: string[] = []
  for (let index = 0; index + 1 < rawHeaders.length; index += 2) {
    const name = (rawHeaders[index] ?? '').toLowerCase()
    const value = rawHeaders[index + 1] ?? ''
    if (name === identityUserHeader) users.push(value)
    else if (name === identityGroupHeader) groups.push(value)
  }
  const [user] = users
  if (users.length !== 1 || user === undefined || user === '') return undefined
  return {user, groups}
}

/** Printable ASCII: what an HTTP header carries as it is, and what a member's audit log shows plainly. */
const printable = /^[\x20-\x7e]+$/

/**
 * Why `identity` cannot be put in a certificate or forwarded, or undefined when it can: an empty or unprintable
 * name, or a service account's (impersonating one needs `impersonate` on serviceaccounts, which the agent's role
 * leaves out on purpose: a certificate names people and KubeSphere, not workloads of the member).
 */
export function identityProblem(identity: ClientIdentity): string | undefined {
  if (!printable.test(identity.user)) return 'the user must be printable ASCII, and not empty'
  if (identity.user.startsWith('system:serviceaccount:')) {
    return "the user must not be a service account's (system:serviceaccount:…): the agent impersonates users and groups only"
  }
  const bad = identity.groups.find((group) => !printable.test(group))
  if (bad !== undefined) return 'each group must be printable ASCII, and not empty'
  return undefined
}

/**
 * The identity the proxy itself writes a rotated agent token to the member with (docs/deployment.md, "Agent
 * tokens"): the member lets it read and patch the agent's token Secret and nothing else
 * ({@link agentTokenRotationRbac}).
 */
export const AGENT_TOKEN_ROTATION_IDENTITY: ClientIdentity = {user: 'ksctl:agent-token-rotation', groups: []}

/** Names of what {@link agentImpersonationRbac}, {@link kubesphereIdentityRbac} and {@link agentTokenRotationRbac} make. */
export const AGENT_IMPERSONATOR_ROLE = 'ksctl-tower-agent-impersonator'
export const KUBESPHERE_IDENTITY_BINDING = 'ksctl-kubesphere-identity'
export const AGENT_TOKEN_ROTATION_ROLE = 'ksctl-tower-agent-token-rotation'

/**
 * On a member: the only right ksctl's agent needs, `impersonate` on users and groups, as a ClusterRole bound to
 * the agent's ServiceAccount. Nothing else: every request the agent relays runs as the client it impersonates
 * (kube-apiserver checks the impersonated user's RBAC, not the agent's), and the agent sends none of its own.
 *
 * Not granted, on purpose: `userextras/*` (certificates carry no extra fields, so the agent sends no
 * Impersonate-Extra-*), `uids` (no Impersonate-Uid either) and `serviceaccounts` (a certificate may not name a
 * service account: {@link identityProblem}). `impersonate` on users and groups lets the agent act as anyone, as
 * any impersonating proxy can; to limit who, add `resourceNames` listing the users and groups you issue
 * certificates for (KUBESPHERE_IDENTITY's among them).
 */
export function agentImpersonationRbac(serviceAccount: {name: string; namespace: string}): ManifestObject[] {
  return [
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: {name: AGENT_IMPERSONATOR_ROLE},
      rules: [{apiGroups: [''], resources: ['users', 'groups'], verbs: ['impersonate']}],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: {name: AGENT_IMPERSONATOR_ROLE},
      roleRef: {apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: AGENT_IMPERSONATOR_ROLE},
      subjects: [{kind: 'ServiceAccount', name: serviceAccount.name, namespace: serviceAccount.namespace}],
    },
  ]
}

/**
 * On a member: what KubeSphere's own identity needs there, cluster-admin (bound to its group, so that a user name
 * of another issue still holds it). The host manages the member with that kubeconfig: KubeSphere 3.4 joins it to
 * kubefed, creating there a ClusterRole of every verb on every resource and binding it (kubesphere/kubesphere
 * v3.4.1 pkg/controller/cluster/join.go, `clusterPolicyRules`), and 4.1 installs the ks-core chart into it with
 * Helm, which binds ks-core's ServiceAccount to cluster-admin (v4.1.3 pkg/controller/cluster/helper.go
 * `installKSCoreInMemberCluster`, config/ks-core/templates/serviceaccount.yaml). Kubernetes lets only a subject
 * that holds a permission grant it (RBAC's escalation check), so nothing short of cluster-admin does either.
 */
export function kubesphereIdentityRbac(): ManifestObject[] {
  return [
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: {name: KUBESPHERE_IDENTITY_BINDING},
      roleRef: {apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin'},
      subjects: KUBESPHERE_IDENTITY.groups.map((name) => ({
        apiGroup: 'rbac.authorization.k8s.io',
        kind: 'Group',
        name,
      })),
    },
  ]
}

/**
 * On a member: the proxy's right to hand the agent a rotated token, `get` and `patch` on the agent's token Secret
 * alone (a Role limited by name), for {@link AGENT_TOKEN_ROTATION_IDENTITY}. The proxy writes the Secret through
 * the tunnel as that identity; the kubelet then updates the file the agent reads its token from.
 */
export function agentTokenRotationRbac(secret: {name: string; namespace: string}): ManifestObject[] {
  return [
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: {name: AGENT_TOKEN_ROTATION_ROLE, namespace: secret.namespace},
      rules: [
        {apiGroups: [''], resources: ['secrets'], resourceNames: [secret.name], verbs: ['get', 'patch']},
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: {name: AGENT_TOKEN_ROTATION_ROLE, namespace: secret.namespace},
      roleRef: {apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: AGENT_TOKEN_ROTATION_ROLE},
      subjects: [
        {apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: AGENT_TOKEN_ROTATION_IDENTITY.user},
      ],
    },
  ]
}
