import {mkdir, writeFile} from 'node:fs/promises'
import path from 'node:path'

import type {V1ClusterRoleBinding} from '@kubernetes/client-node'
import {execa} from 'execa'

import type {ManifestObject} from '../../src/k8s/manifest-objects.js'
import {agentImpersonationRbac, kubesphereIdentityRbac} from '../../src/tower/shared/identity.js'
import {adminApis} from '../testbed/seed.js'
import {until} from './ksctl-running.js'
import {tempDir} from './temp-dir.js'

const AGENT_NAMESPACE = 'kube-system'
const AGENT_ACCOUNT = 'ksctl-tower-agent'

/** Creates cluster-scoped RBAC objects, replacing any a killed run left; returns their removal. */
async function applyClusterRbac(
  apis: ReturnType<typeof adminApis>,
  objects: ManifestObject[],
): Promise<() => Promise<void>> {
  const remove = async (): Promise<void> => {
    for (const object of [...objects].reverse()) {
      const name = object.metadata.name
      if (object.kind === 'ClusterRole') await apis.rbac.deleteClusterRole({name}).catch(() => undefined)
      else await apis.rbac.deleteClusterRoleBinding({name}).catch(() => undefined)
    }
  }
  await remove()
  for (const object of objects) {
    if (object.kind === 'ClusterRole') {
      await apis.rbac.createClusterRole({body: object})
    } else if (object.kind === 'ClusterRoleBinding') {
      await apis.rbac.createClusterRoleBinding({body: object as unknown as V1ClusterRoleBinding})
    } else {
      throw new Error(`not a cluster-scoped RBAC object: ${object.kind}`)
    }
  }
  return remove
}

/**
 * ksctl's agent on the test bed's member as its pod runs it, with least privilege: a ServiceAccount holding only what
 * `agentImpersonationRbac` grants (impersonate users and groups), a token of it (TokenRequest, 1 h) and the member's
 * CA in a directory laid out as /var/run/secrets/kubernetes.io/serviceaccount, and the agent flags that use them.
 */
export async function leastPrivilegeAgent(
  kubeconfig: string,
  memberUrl: string,
  caCertPem: string,
  context = 'member',
): Promise<{flags: string[]; remove: () => Promise<void>}> {
  const apis = adminApis(kubeconfig, context)
  await apis.core
    .deleteNamespacedServiceAccount({namespace: AGENT_NAMESPACE, name: AGENT_ACCOUNT})
    .catch(() => undefined)
  await apis.core.createNamespacedServiceAccount({
    namespace: AGENT_NAMESPACE,
    body: {metadata: {name: AGENT_ACCOUNT}},
  })
  const removeRbac = await applyClusterRbac(
    apis,
    agentImpersonationRbac({name: AGENT_ACCOUNT, namespace: AGENT_NAMESPACE}),
  )
  const request = await apis.core.createNamespacedServiceAccountToken({
    name: AGENT_ACCOUNT,
    namespace: AGENT_NAMESPACE,
    body: {spec: {audiences: [], expirationSeconds: 3600}},
  })
  const dir = path.join(tempDir('ksctl-agent-sa-'), 'serviceaccount')
  await mkdir(dir, {recursive: true})
  await writeFile(path.join(dir, 'token'), request.status?.token ?? '', {mode: 0o600})
  await writeFile(path.join(dir, 'ca.crt'), caCertPem)
  await writeFile(path.join(dir, 'namespace'), AGENT_NAMESPACE)
  return {
    flags: ['--service-account-dir', dir, '--kubernetes-service', new URL(memberUrl).host],
    remove: async () => {
      await removeRbac()
      await apis.core
        .deleteNamespacedServiceAccount({namespace: AGENT_NAMESPACE, name: AGENT_ACCOUNT})
        .catch(() => undefined)
    },
  }
}

/** What KubeSphere's own identity gets on a member (`kubesphereIdentityRbac`); returns its removal. */
export async function grantKubesphereIdentity(
  kubeconfig: string,
  context = 'member',
): Promise<() => Promise<void>> {
  return applyClusterRbac(adminApis(kubeconfig, context), kubesphereIdentityRbac())
}

/**
 * A ClusterRole of `rules` bound to a user (the identity of a kubeconfig `ksctl tower issue-kubeconfig` made); returns
 * their removal. Its own rules, not view or edit: those are aggregated by kube-controller-manager, which the test bed
 * does not run, so they grant nothing there.
 */
export async function grantUser(
  kubeconfig: string,
  context: string,
  grant: {name: string; user: string; rules: {apiGroups: string[]; resources: string[]; verbs: string[]}[]},
): Promise<() => Promise<void>> {
  return applyClusterRbac(adminApis(kubeconfig, context), [
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: {name: grant.name},
      rules: grant.rules,
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: {name: grant.name},
      roleRef: {apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: grant.name},
      subjects: [{apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: grant.user}],
    },
  ])
}

/**
 * Until the cluster's RBAC (its authorizer reads it from a cache, a moment behind a write) lets the user and groups do
 * `verb` on `resource` (`pods/exec` for a subresource), as its admin asks it.
 */
export async function untilAllowed(
  kubeconfig: string,
  context: string,
  identity: {user: string; groups?: string[]},
  verb: string,
  resource: string,
): Promise<void> {
  const [name = '', subresource] = resource.split('/')
  await until(
    async () =>
      (
        await execa(
          '/usr/bin/kubectl',
          [
            ...['--kubeconfig', kubeconfig, '--context', context, 'auth', 'can-i', verb, name],
            ...(subresource === undefined ? [] : ['--subresource', subresource]),
            ...['-n', 'default', '--as', identity.user],
            ...(identity.groups ?? []).flatMap((group) => ['--as-group', group]),
          ],
          {reject: false, stdin: 'ignore'},
        )
      ).stdout === 'yes',
    `${identity.user} to be allowed to ${verb} ${resource}`,
  )
}
