import {createHash} from 'node:crypto'

import {
  ApiextensionsV1Api,
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  KubernetesObjectApi,
  RbacAuthorizationV1Api,
  loadYaml,
  type KubernetesObject,
} from '@kubernetes/client-node'
import {dump} from 'js-yaml'

import {
  buildFixture,
  type FixtureName,
  type FixtureOptions,
  type K8sObject,
} from '../fixtures/kubesphere/fixtures.js'

const NAMESPACE = 'kubesphere-system'
/** Marks a CRD with the hash of the fixture it came from, so an unchanged CRD is kept between tests. */
const FIXTURE_HASH = 'ksctl.io/fixture-hash'
const CRD_NAMES = ['clusters.cluster.kubesphere.io', 'clusterconfigurations.installer.kubesphere.io']
const WAIT_STEP_MS = 100
const WAIT_LIMIT_MS = 30_000

/** Admin API clients for one context of the test bed, each on a KubeConfig of its own. */
export function adminApis(kubeconfigPath: string, context: string) {
  const config = new KubeConfig()
  config.loadFromFile(kubeconfigPath)
  config.setCurrentContext(context)
  return {
    config,
    core: config.makeApiClient(CoreV1Api),
    apps: config.makeApiClient(AppsV1Api),
    rbac: config.makeApiClient(RbacAuthorizationV1Api),
    custom: config.makeApiClient(CustomObjectsApi),
    crds: config.makeApiClient(ApiextensionsV1Api),
    objects: KubernetesObjectApi.makeApiClient(config),
  }
}

type Apis = ReturnType<typeof adminApis>

/**
 * Makes one test-bed cluster look exactly like a fixture: removes what earlier tests or fixtures left
 * (KubeSphere objects, the kubesphere-system namespace's contents, CRDs the fixture does not have), then
 * creates the fixture's objects, CRDs first and established before their objects.
 */
export async function resetCluster(
  kubeconfigPath: string,
  context: string,
  fixture: FixtureName,
  options: FixtureOptions = {},
): Promise<void> {
  const apis = adminApis(kubeconfigPath, context)
  const objects = buildFixture(fixture, options)
  const wantedCrds = objects.filter((object) => object.kind === 'CustomResourceDefinition')
  await deleteKubeSphereObjects(apis)
  await deleteNamespaceContents(apis)
  await reconcileCrds(apis, wantedCrds)
  const wantsNamespace = objects.some((object) => object.kind === 'Namespace')
  if (!wantsNamespace) await deleteNamespace(apis, NAMESPACE)
  for (const object of objects) {
    if (object.kind === 'CustomResourceDefinition') continue
    await createOrReplace(apis, object)
  }
}

async function deleteKubeSphereObjects(apis: Apis): Promise<void> {
  const clusters = await listIfServed(apis, 'cluster.kubesphere.io', 'v1alpha1', 'clusters')
  for (const name of clusters) {
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
  for (const name of ['tower', 'kubesphere-agent']) {
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
  ])
  // Services have no deletecollection verb.
  const services = await apis.core.listNamespacedService({namespace})
  for (const service of services.items) {
    await ignoreNotFound(apis.core.deleteNamespacedService({namespace, name: service.metadata?.name ?? ''}))
  }
}

/** Keeps a CRD the fixture wants unchanged, replaces one that differs, deletes one it does not want. */
async function reconcileCrds(apis: Apis, wanted: K8sObject[]): Promise<void> {
  for (const name of CRD_NAMES) {
    const want = wanted.find((crd) => crd.metadata.name === name)
    const have = await apis.crds.readCustomResourceDefinition({name}).catch(() => undefined)
    const wantHash =
      want === undefined ? undefined : createHash('sha256').update(JSON.stringify(want)).digest('hex')
    if (
      have !== undefined &&
      wantHash !== undefined &&
      have.metadata?.annotations?.[FIXTURE_HASH] === wantHash
    ) {
      continue
    }
    if (have !== undefined) {
      await ignoreNotFound(apis.crds.deleteCustomResourceDefinition({name}))
      await waitFor(
        `CRD ${name} to be deleted`,
        async () =>
          await apis.crds.readCustomResourceDefinition({name}).then(
            () => false,
            () => true,
          ),
      )
    }
    if (want !== undefined) {
      // Typed clients serialize from client-node's model property names; a CRD read from YAML has the wire
      // names (x-kubernetes-preserve-unknown-fields), which would be dropped unless deserialized first.
      const stamped = {...want, metadata: {...want.metadata, annotations: {[FIXTURE_HASH]: wantHash ?? ''}}}
      await apis.objects.create(loadYaml<KubernetesObject>(dump(stamped)))
      const spec = want.spec as {group: string; names: {plural: string}; versions: {name: string}[]}
      await waitFor(`CRD ${name} to be served`, async () =>
        apis.custom
          .listClusterCustomObject({
            group: spec.group,
            version: spec.versions[0]?.name ?? 'v1alpha1',
            plural: spec.names.plural,
          })
          .then(
            () => true,
            () => false,
          ),
      )
    }
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

const customKinds: Record<string, {group: string; version: string; plural: string}> = {
  ClusterConfiguration: {
    group: 'installer.kubesphere.io',
    version: 'v1alpha1',
    plural: 'clusterconfigurations',
  },
  Cluster: {group: 'cluster.kubesphere.io', version: 'v1alpha1', plural: 'clusters'},
}

async function createOrReplace(apis: Apis, object: K8sObject): Promise<void> {
  const custom = customKinds[object.kind]
  if (custom !== undefined) {
    // KubernetesObjectApi serializes kinds it has no model for as bare objects, dropping spec and status.
    const namespace = object.metadata.namespace
    await (namespace === undefined
      ? apis.custom.createClusterCustomObject({...custom, body: object})
      : apis.custom.createNamespacedCustomObject({...custom, namespace, body: object}))
    return
  }
  const {status, ...spec} = object
  const existing = await apis.objects
    .read(spec as KubernetesObject & {metadata: {name: string}})
    .catch(() => undefined)
  if (existing === undefined) {
    await apis.objects.create({
      ...spec,
      ...(hasStatusSubresource(object) ? {} : status === undefined ? {} : {status}),
    })
  } else {
    await apis.objects.replace({
      ...spec,
      metadata: {...spec.metadata, resourceVersion: existing.metadata?.resourceVersion},
    })
  }
  if (object.kind === 'Service' && status !== undefined) {
    const current = await apis.core.readNamespacedService({
      namespace: object.metadata.namespace ?? NAMESPACE,
      name: object.metadata.name,
    })
    await apis.core.replaceNamespacedServiceStatus({
      namespace: object.metadata.namespace ?? NAMESPACE,
      name: object.metadata.name,
      body: {...current, status: status as object},
    })
  }
}

function hasStatusSubresource(object: K8sObject): boolean {
  return object.kind === 'Service' || object.kind === 'Deployment'
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

async function ignoreNotFound(request: Promise<unknown>): Promise<void> {
  try {
    await request
  } catch (error) {
    if ((error as {code?: number}).code !== 404) throw error
  }
}

export async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  limitMs = WAIT_LIMIT_MS,
): Promise<void> {
  const deadline = Date.now() + limitMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${limitMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, WAIT_STEP_MS))
  }
}
