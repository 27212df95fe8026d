import {CoordinationV1Api, type KubernetesObject} from '@kubernetes/client-node'

import type {ProcessOutcome} from '../helpers/ksctl-process.js'
import {ksctl} from '../helpers/ksctl-process.js'
import {adminApis} from '../testbed/seed.js'
import {testBed} from './hooks.js'

const NAMESPACE = 'kubesphere-system'

/**
 * resourceVersion of every object a changing command may touch on one cluster, leases included: equal
 * snapshots mean nothing changed.
 */
export async function snapshot(context: string): Promise<Record<string, string>> {
  const apis = adminApis(testBed().kubeconfigPath, context)
  const versions: Record<string, string> = {}
  const record = (kind: string, items: KubernetesObject[]) => {
    for (const item of items)
      versions[`${kind}/${item.metadata?.name ?? ''}`] = item.metadata?.resourceVersion ?? ''
  }
  const custom = async (group: string, plural: string, namespace?: string): Promise<KubernetesObject[]> => {
    const list: unknown = await (
      namespace === undefined
        ? apis.custom.listClusterCustomObject({group, version: 'v1alpha1', plural})
        : apis.custom.listNamespacedCustomObject({group, version: 'v1alpha1', plural, namespace})
    ).catch(() => undefined)
    return (list as {items: KubernetesObject[]} | undefined)?.items ?? []
  }
  const namespace = NAMESPACE
  record('namespace', (await apis.core.listNamespace()).items)
  record('configmap', (await apis.core.listNamespacedConfigMap({namespace})).items)
  record('secret', (await apis.core.listNamespacedSecret({namespace})).items)
  record('deployment', (await apis.apps.listNamespacedDeployment({namespace})).items)
  record('serviceaccount', (await apis.core.listNamespacedServiceAccount({namespace})).items)
  record('clusterrolebinding', (await apis.rbac.listClusterRoleBinding()).items)
  record('lease', (await apis.config.makeApiClient(CoordinationV1Api).listNamespacedLease({namespace})).items)
  record('cluster', await custom('cluster.kubesphere.io', 'clusters'))
  record('clusterconfiguration', await custom('installer.kubesphere.io', 'clusterconfigurations', namespace))
  return versions
}

export async function bothClusters(): Promise<Record<string, Record<string, string>>> {
  return {host: await snapshot('host'), member: await snapshot('member')}
}

/** Runs the built ksctl against the test bed's kubeconfig. */
export function run(args: string[]): Promise<ProcessOutcome> {
  return ksctl([...args, '--kubeconfig', testBed().kubeconfigPath])
}
