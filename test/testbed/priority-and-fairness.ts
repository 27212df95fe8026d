import {readFile, writeFile} from 'node:fs/promises'
import https from 'node:https'
import type {AddressInfo} from 'node:net'
import path from 'node:path'

import {
  AdmissionregistrationV1Api,
  CoreV1Api,
  FlowcontrolApiserverV1Api,
  KubeConfig,
  RbacAuthorizationV1Api,
} from '@kubernetes/client-node'
import {dump, load} from 'js-yaml'

import {loopbackPki} from '../helpers/test-pki.js'
import {adminApis, waitFor} from './seed.js'

const name = 'ksctl-test-saturated'

interface KubeconfigFile {
  users: {name: string; user: Record<string, unknown>}[]
  contexts: {name: string; context: {cluster: string; user: string}}[]
}

export interface SaturatedUser {
  /** A context of `kubeconfigPath` that acts as the user (the admin, impersonating it). */
  context: string
  kubeconfigPath: string
  /**
   * Lets the held requests finish and deletes the FlowSchema and its level: the user's requests are served again
   * (the level keeps one seat, which two requests at once would still overflow).
   */
  release(): Promise<void>
  /** Removes everything this made (after `release`). */
  undo(): Promise<void>
}

/**
 * Makes the real kube-apiserver answer every request of one user with HTTP 429, with API Priority and Fairness:
 * a FlowSchema puts the user's requests in a priority level of its own that rejects what it cannot seat
 * (`limitResponse: Reject`), and requests of that user held in a validating admission webhook occupy its seats.
 *
 * Kubernetes 1.35 does not reject a lone request at a level with `nominalConcurrencyShares: 0` (and no lending or
 * borrowing): it still seats one at a time, so a zero-share level alone answers 429 only to requests that arrive
 * together. Holding requests in admission (which runs inside the level's seat) makes every other one 429, until
 * `release()` lets them go and removes the level.
 */
export async function saturateUser(
  kubeconfigPath: string,
  adminContext: string,
  user: string,
): Promise<SaturatedUser> {
  const apis = adminApis(kubeconfigPath, adminContext)
  const rbac = apis.config.makeApiClient(RbacAuthorizationV1Api)
  const flowControl = apis.config.makeApiClient(FlowcontrolApiserverV1Api)
  const admission = apis.config.makeApiClient(AdmissionregistrationV1Api)
  const core = apis.config.makeApiClient(CoreV1Api)

  const context = `${adminContext}-as-${user}`
  const config = load(await readFile(kubeconfigPath, 'utf8')) as KubeconfigFile
  const adminContextEntry = config.contexts.find((entry) => entry.name === adminContext)
  const admin = config.users.find((entry) => entry.name === adminContextEntry?.context.user)
  if (adminContextEntry === undefined || admin === undefined) throw new Error(`no context ${adminContext}`)
  config.users.push({name: context, user: {...admin.user, as: user}})
  config.contexts.push({name: context, context: {cluster: adminContextEntry.context.cluster, user: context}})
  const userKubeconfig = path.join(path.dirname(kubeconfigPath), `${context}.kubeconfig`)
  await writeFile(userKubeconfig, dump(config), {mode: 0o600})
  const asUser = new KubeConfig()
  asUser.loadFromFile(userKubeconfig)
  asUser.setCurrentContext(context)
  const userCore = asUser.makeApiClient(CoreV1Api)

  // The webhook holds every request it is asked about until released.
  const pki = await loopbackPki('priority-and-fairness')
  const held: (() => void)[] = []
  let released = false
  const webhook = https.createServer(
    {cert: pki.server.certPem, key: pki.server.keyPem},
    (request, response) => {
      let body = ''
      request.on('data', (chunk: Buffer) => (body += chunk.toString()))
      request.on('end', () => {
        const review = JSON.parse(body) as {request: {uid: string}}
        const answer = (): void => {
          response.writeHead(200, {'content-type': 'application/json'})
          response.end(
            JSON.stringify({
              apiVersion: 'admission.k8s.io/v1',
              kind: 'AdmissionReview',
              response: {uid: review.request.uid, allowed: true},
            }),
          )
        }
        if (released) answer()
        else held.push(answer)
      })
    },
  )
  await new Promise<void>((resolve) => webhook.listen(0, '127.0.0.1', resolve))
  const webhookPort = (webhook.address() as AddressInfo).port

  await rbac.createClusterRoleBinding({
    body: {
      metadata: {name},
      roleRef: {apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin'},
      subjects: [{apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: user}],
    },
  })
  await core.createNamespace({body: {metadata: {name, labels: {[name]: 'hold'}}}})
  await admission.createValidatingWebhookConfiguration({
    body: {
      metadata: {name},
      webhooks: [
        {
          name: `hold.${name}.ksctl.io`,
          clientConfig: {
            url: `https://127.0.0.1:${webhookPort}/hold`,
            caBundle: Buffer.from(pki.ca.certPem).toString('base64'),
          },
          rules: [{apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['configmaps']}],
          namespaceSelector: {matchLabels: {[name]: 'hold'}},
          admissionReviewVersions: ['v1'],
          sideEffects: 'None',
          failurePolicy: 'Ignore',
          timeoutSeconds: 30,
        },
      ],
    },
  })
  await flowControl.createPriorityLevelConfiguration({
    body: {
      metadata: {name},
      spec: {
        type: 'Limited',
        limited: {
          nominalConcurrencyShares: 0,
          lendablePercent: 0,
          borrowingLimitPercent: 0,
          limitResponse: {type: 'Reject'},
        },
      },
    },
  })
  await flowControl.createFlowSchema({
    body: {
      metadata: {name},
      spec: {
        matchingPrecedence: 100,
        priorityLevelConfiguration: {name},
        distinguisherMethod: {type: 'ByUser'},
        rules: [
          {
            subjects: [{kind: 'User', user: {name: user}}],
            resourceRules: [
              {verbs: ['*'], apiGroups: ['*'], resources: ['*'], clusterScope: true, namespaces: ['*']},
            ],
            nonResourceRules: [{verbs: ['*'], nonResourceURLs: ['*']}],
          },
        ],
      },
    },
  })

  const status = (): Promise<number> =>
    userCore.listNamespace().then(
      () => 200,
      (error: unknown) => (error as {code?: number}).code ?? 0,
    )
  const holders: Promise<unknown>[] = []
  let unsettled = 0
  // A few creates at a time, held in the webhook, fill whatever seats the level has; more are sent while every
  // one still out is held (the webhook or the priority level may take a moment to be in force), until a lone
  // request is refused.
  await waitFor(`requests of ${user} to be refused with 429`, async () => {
    if (held.length >= unsettled) {
      for (let index = 0; index < 4; index++) {
        unsettled++
        holders.push(
          userCore
            .createNamespacedConfigMap({namespace: name, body: {metadata: {generateName: 'hold-'}}})
            .catch(() => undefined)
            .finally(() => unsettled--),
        )
      }
    }
    return (await status()) === 429
  })

  return {
    context,
    kubeconfigPath: userKubeconfig,
    release: async () => {
      released = true
      for (const answer of held.splice(0)) answer()
      await Promise.all(holders)
      await flowControl.deleteFlowSchema({name})
      await flowControl.deletePriorityLevelConfiguration({name})
      await waitFor(`requests of ${user} to be served again`, async () => (await status()) === 200)
    },
    undo: async () => {
      released = true
      for (const answer of held.splice(0)) answer()
      await flowControl.deleteFlowSchema({name}).catch(() => undefined)
      await flowControl.deletePriorityLevelConfiguration({name}).catch(() => undefined)
      await admission.deleteValidatingWebhookConfiguration({name}).catch(() => undefined)
      await core.deleteNamespace({name}).catch(() => undefined)
      await rbac.deleteClusterRoleBinding({name}).catch(() => undefined)
      webhook.closeAllConnections()
      await new Promise<void>((resolve) => webhook.close(() => resolve()))
    },
  }
}
