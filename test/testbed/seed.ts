import {
  ApiextensionsV1Api,
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  KubernetesObjectApi,
  RbacAuthorizationV1Api,
  type KubernetesObject,
  NetworkingV1Api,
} from '@kubernetes/client-node'

import {buildFixture, type FixtureName, type FixtureOptions} from '../../src/kubesphere-standin/fixtures.js'
import {ignoreNotFound, seedCluster, waitFor} from '../../src/kubesphere-standin/seed.js'

export {waitFor}

const NAMESPACE = 'kubesphere-system'

/** Admin API clients for one context of the test bed, each on a KubeConfig of its own. */
export function adminApis(kubeconfigPath: string, context: string) {
  const config = new KubeConfig()
  config.loadFromFile(kubeconfigPath)
  config.setCurrentContext(context)
  return {
    config,
    core: config.makeApiClient(CoreV1Api),
    apps: config.makeApiClient(AppsV1Api),
    networking: config.makeApiClient(NetworkingV1Api),
    rbac: config.makeApiClient(RbacAuthorizationV1Api),
    custom: config.makeApiClient(CustomObjectsApi),
    crds: config.makeApiClient(ApiextensionsV1Api),
    objects: KubernetesObjectApi.makeApiClient(config),
  }
}

type Apis = ReturnType<typeof adminApis>

/** Creates a KubeSphere Cluster `name` with `spec` on a test-bed cluster, as the console or Tower would leave it. */
export async function createCluster(apis: Apis, name: string, spec: Record<string, unknown>): Promise<void> {
  await apis.custom.createClusterCustomObject({
    group: 'cluster.kubesphere.io',
    version: 'v1alpha1',
    plural: 'clusters',
    body: {apiVersion: 'cluster.kubesphere.io/v1alpha1', kind: 'Cluster', metadata: {name}, spec},
  })
}

/**
 * Makes one test-bed cluster look exactly like a fixture: removes what earlier tests or fixtures left
 * (KubeSphere objects, the kubesphere-system namespace's contents), then seeds the fixture as the playground
 * does (`seedCluster`, which also removes CRDs the fixture does not have).
 */
export async function resetCluster(
  kubeconfigPath: string,
  context: string,
  fixture: FixtureName,
  options: FixtureOptions = {},
): Promise<void> {
  const apis = adminApis(kubeconfigPath, context)
  const objects = buildFixture(fixture, options)
  await deleteKubeSphereObjects(apis)
  await deleteNamespaceContents(apis)
  const wantsNamespace = objects.some((object) => object.kind === 'Namespace')
  if (!wantsNamespace) await deleteNamespace(apis, NAMESPACE)
  await seedCluster(apis.config, objects)
}

async function deleteKubeSphereObjects(apis: Apis): Promise<void> {
  const clusters = await listIfServed(apis, 'cluster.kubesphere.io', 'v1alpha1', 'clusters')
  for (const name of clusters) {
    // A finalizer whose controller is gone (a stand-in stopped by a failed test) would keep the Cluster, and
    // with it the CRD, from ever being deleted, and fail every later test.
    await ignoreNotFound(
      apis.custom.patchClusterCustomObject({
        group: 'cluster.kubesphere.io',
        version: 'v1alpha1',
        plural: 'clusters',
        name,
        body: [{op: 'add', path: '/metadata/finalizers', value: []}],
      }),
    )
    await ignoreNotFound(
      apis.custom.deleteClusterCustomObject({
        group: 'cluster.kubesphere.io',
        version: 'v1alpha1',
        plural: 'clusters',
        name,
      }),
    )
  }
  const configurations = await listIfServed(
    apis,
    'installer.kubesphere.io',
    'v1alpha1',
    'clusterconfigurations',
    NAMESPACE,
  )
  for (const name of configurations) {
    await ignoreNotFound(
      apis.custom.deleteNamespacedCustomObject({
        group: 'installer.kubesphere.io',
        version: 'v1alpha1',
        plural: 'clusterconfigurations',
        namespace: NAMESPACE,
        name,
      }),
    )
  }
  for (const name of ['tower', 'kubesphere', 'kubesphere-agent']) {
    await ignoreNotFound(apis.rbac.deleteClusterRoleBinding({name}))
  }
}

async function deleteNamespaceContents(apis: Apis): Promise<void> {
  const namespace = NAMESPACE
  await Promise.all([
    ignoreNotFound(apis.core.deleteCollectionNamespacedConfigMap({namespace})),
    ignoreNotFound(apis.core.deleteCollectionNamespacedSecret({namespace})),
    ignoreNotFound(apis.apps.deleteCollectionNamespacedDeployment({namespace})),
    ignoreNotFound(apis.core.deleteCollectionNamespacedServiceAccount({namespace})),
    // ksctl proxy install's policy for the kubesphere ports: a test that failed before its uninstall leaves it.
    ignoreNotFound(apis.networking.deleteCollectionNamespacedNetworkPolicy({namespace})),
  ])
  // Services have no deletecollection verb.
  const services = await apis.core.listNamespacedService({namespace})
  for (const service of services.items) {
    await ignoreNotFound(apis.core.deleteNamespacedService({namespace, name: service.metadata?.name ?? ''}))
  }
}

async function deleteNamespace(apis: Apis, name: string): Promise<void> {
  const existing = await apis.core.readNamespace({name}).catch(() => undefined)
  if (existing === undefined) return
  await ignoreNotFound(apis.core.deleteNamespace({name}))
  // No kube-controller-manager runs in the test bed, so nothing would ever finish the namespace's deletion.
  const terminating = await apis.core.readNamespace({name}).catch(() => undefined)
  if (terminating !== undefined) {
    await ignoreNotFound(
      apis.core.replaceNamespaceFinalize({name, body: {...terminating, spec: {finalizers: []}}}),
    )
  }
  await waitFor(`namespace ${name} to be deleted`, async () =>
    apis.core.readNamespace({name}).then(
      () => false,
      () => true,
    ),
  )
}

async function listIfServed(
  apis: Apis,
  group: string,
  version: string,
  plural: string,
  namespace?: string,
): Promise<string[]> {
  try {
    const list = (
      namespace === undefined
        ? await apis.custom.listClusterCustomObject({group, version, plural})
        : await apis.custom.listNamespacedCustomObject({group, version, plural, namespace})
    ) as {items: KubernetesObject[]}
    return list.items.map((item) => item.metadata?.name ?? '')
  } catch {
    return []
  }
}
