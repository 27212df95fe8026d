import {createServer as createHttpsServer} from 'node:https'
import type {AddressInfo} from 'node:net'

import {
  AdmissionregistrationV1Api,
  CoreV1Api,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node'

import {createCertificateAuthority, issueCertificate} from '../../src/pki/certificates.js'
import {adminApis, waitFor} from './seed.js'

export interface DeniedWrites {
  group: string
  resource: string
  operations: ('CREATE' | 'UPDATE' | 'DELETE')[]
  /** Only the objects of these names (any object when absent). */
  names?: string[]
}

/**
 * Makes the API server refuse some writes, with a ValidatingAdmissionPolicy (built into kube-apiserver, no
 * webhook needed): the way tests make one step of a command fail for real. `probe` must return true once
 * the denial is in force (policies take effect a moment after they are created). Returns the undo.
 */
export async function denyWrites(
  kubeconfigPath: string,
  context: string,
  name: string,
  denied: DeniedWrites,
  probe: () => Promise<boolean>,
): Promise<() => Promise<void>> {
  const admission = adminApis(kubeconfigPath, context).config.makeApiClient(AdmissionregistrationV1Api)
  await admission.createValidatingAdmissionPolicy({
    body: {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicy',
      metadata: {name},
      spec: {
        failurePolicy: 'Fail',
        matchConstraints: {
          resourceRules: [
            {
              apiGroups: [denied.group],
              apiVersions: ['*'],
              resources: [denied.resource],
              operations: denied.operations,
              ...(denied.names !== undefined && {resourceNames: denied.names}),
            },
          ],
        },
        validations: [{expression: 'false', message: `${name}: refused by the test`}],
      },
    },
  })
  await admission.createValidatingAdmissionPolicyBinding({
    body: {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicyBinding',
      metadata: {name},
      spec: {policyName: name, validationActions: ['Deny']},
    },
  })
  await waitFor(`policy ${name} to take effect`, probe)
  return async () => {
    await admission.deleteValidatingAdmissionPolicyBinding({name})
    await admission.deleteValidatingAdmissionPolicy({name})
    await waitFor(`policy ${name} to be lifted`, async () => !(await probe()))
  }
}

/** One AdmissionReview the Cluster webhook answered. */
export interface WebhookCall {
  operation: string
  name: string
  dryRun: boolean
  allowed: boolean
  message: string
}

export interface ClusterWebhook {
  /** Every review it answered, in order. */
  calls: WebhookCall[]
  /** Unregisters it, waits until the API server no longer calls it, and stops serving. */
  stop(): Promise<void>
}

const WEBHOOK_CONFIGURATION = 'cluster.kubesphere.io'
const KUBESPHERE_DENIAL =
  'this kubeconfig corresponds to a different cluster than the previous one, you need to make sure that kubeconfig is not from another cluster'

/**
 * KubeSphere 3.4's validating webhook for Cluster objects, registered on `context` as ks-installer registers
 * it (release-3.4 roles/ks-core/ks-core/files/ks-core/templates/webhook.yaml: configuration
 * `cluster.kubesphere.io`, webhook `validating-cluster.kubesphere.io`, UPDATE of clusters, failurePolicy
 * Fail, sideEffects None, AdmissionReview v1beta1) and served by this process over HTTPS with the rule of
 * kubesphere release-3.4 pkg/controller/cluster/cluster_webhook.go: an update of a Cluster whose old
 * status.uid is set is admitted only if a client built from the new spec.connection.kubeconfig can GET the
 * member's kube-system namespace and its UID is that status.uid. The GET goes to a real API server.
 */
export async function serveClusterWebhook(kubeconfigPath: string, context: string): Promise<ClusterWebhook> {
  const ca = await createCertificateAuthority({commonName: 'ksctl-test-webhook-ca', validityDays: 1})
  const serving = await issueCertificate(ca, {
    commonName: 'webhook',
    ipAddresses: ['127.0.0.1'],
    usage: 'server',
  })
  const calls: WebhookCall[] = []
  const server = createHttpsServer({cert: serving.certPem, key: serving.keyPem}, (request, response) => {
    const chunks: Buffer[] = []
    request.on('data', (chunk: Buffer) => chunks.push(chunk))
    request.on('end', () => {
      void review(JSON.parse(Buffer.concat(chunks).toString('utf8')) as AdmissionReview).then((answer) => {
        response.writeHead(200, {'content-type': 'application/json'})
        response.end(JSON.stringify(answer))
      })
    })
  })
  const review = async (body: AdmissionReview): Promise<object> => {
    const {request} = body
    const {allowed, message} = await decide(request)
    calls.push({
      operation: request.operation,
      name: request.name ?? request.object?.metadata?.name ?? '',
      dryRun: request.dryRun === true,
      allowed,
      message,
    })
    return {
      apiVersion: body.apiVersion,
      kind: 'AdmissionReview',
      response: {
        uid: request.uid,
        allowed,
        ...(allowed ? {} : {status: {code: 403, reason: 'Forbidden', message}}),
      },
    }
  }
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  const admission = adminApis(kubeconfigPath, context).config.makeApiClient(AdmissionregistrationV1Api)
  await admission.createValidatingWebhookConfiguration({
    body: {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingWebhookConfiguration',
      metadata: {name: WEBHOOK_CONFIGURATION},
      webhooks: [
        {
          name: 'validating-cluster.kubesphere.io',
          admissionReviewVersions: ['v1beta1'],
          clientConfig: {
            url: `https://127.0.0.1:${port}/validate-cluster-kubesphere-io-v1alpha1`,
            caBundle: Buffer.from(ca.certPem).toString('base64'),
          },
          failurePolicy: 'Fail',
          matchPolicy: 'Exact',
          sideEffects: 'None',
          timeoutSeconds: 10,
          rules: [
            {
              apiGroups: ['cluster.kubesphere.io'],
              apiVersions: ['v1alpha1'],
              operations: ['UPDATE'],
              resources: ['clusters'],
              scope: '*',
            },
          ],
        },
      ],
    },
  })
  const host = adminApis(kubeconfigPath, context)
  /** A dry-run update of the host's own Cluster: the webhook sees it once it is in force. */
  const probe = async () => {
    const before = calls.length
    await host.custom
      .patchClusterCustomObject(
        {
          group: 'cluster.kubesphere.io',
          version: 'v1alpha1',
          plural: 'clusters',
          name: 'host',
          body: {metadata: {labels: {'ksctl.io/webhook-probe': String(Date.now())}}},
          dryRun: 'All',
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      )
      .catch(() => undefined)
    return calls.length > before
  }
  await waitFor('the Cluster webhook to be called', probe)
  return {
    calls,
    async stop() {
      await admission.deleteValidatingWebhookConfiguration({name: WEBHOOK_CONFIGURATION})
      await waitFor('the Cluster webhook to be lifted', async () => !(await probe()))
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

interface AdmissionReview {
  apiVersion: string
  request: {
    uid: string
    operation: string
    name?: string
    dryRun?: boolean
    object?: WebhookCluster
    oldObject?: WebhookCluster
  }
}

interface WebhookCluster {
  metadata?: {name?: string}
  spec?: {connection?: {kubeconfig?: string}}
  status?: {uid?: string}
}

async function decide(request: AdmissionReview['request']): Promise<{allowed: boolean; message: string}> {
  if (request.operation !== 'UPDATE') return {allowed: true, message: ''}
  const expected = request.oldObject?.status?.uid ?? ''
  // "The cluster created for the first time has no status information"
  if (expected === '') return {allowed: true, message: ''}
  const name = request.object?.metadata?.name ?? ''
  const config = new KubeConfig()
  try {
    const text = Buffer.from(request.object?.spec?.connection?.kubeconfig ?? '', 'base64').toString('utf8')
    if (text.trim() === '') throw new Error('invalid configuration: no configuration has been provided')
    config.loadFromString(text)
  } catch (error) {
    return {allowed: false, message: `failed to load cluster config for ${name}: ${(error as Error).message}`}
  }
  try {
    const timeout = AbortSignal.timeout(5000)
    const namespace = await Promise.race([
      config.makeApiClient(CoreV1Api).readNamespace({name: 'kube-system'}),
      new Promise<never>((_resolve, reject) =>
        timeout.addEventListener('abort', () => reject(new Error('context deadline exceeded'))),
      ),
    ])
    if (namespace.metadata?.uid !== expected) return {allowed: false, message: KUBESPHERE_DENIAL}
    return {allowed: true, message: ''}
  } catch (error) {
    const cause = (error as {cause?: {code?: string}}).cause?.code
    return {allowed: false, message: `${(error as Error).message}${cause === undefined ? '' : ` (${cause})`}`}
  }
}
