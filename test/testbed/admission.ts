import {AdmissionregistrationV1Api} from '@kubernetes/client-node'

import {adminApis, waitFor} from './seed.js'

export interface DeniedWrites {
  group: string
  resource: string
  operations: ('CREATE' | 'UPDATE' | 'DELETE')[]
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
