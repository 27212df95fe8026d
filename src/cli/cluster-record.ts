import {Args, Flags} from '@oclif/core'

import {validateProxyClusterName} from '../kubesphere/names.js'
import {parseLabels} from './labels.js'

/**
 * What a command that registers a Cluster on the host (`member join`, `host invite`) records on it, as KubeSphere's
 * console shows it: one definition, so both commands take the same NAME and flags and check them alike.
 */
export const clusterNameArg = Args.string({
  description: 'cluster name on the host (lowercase letters, digits, "-"; at most 60)',
  required: true,
})

export const clusterRecordFlags = {
  label: Flags.string({
    description: 'label of the Cluster, key=value (repeatable)',
    multiple: true,
    default: [],
  }),
  provider: Flags.string({description: 'provider shown in the console (e.g. "Aliyun ACK")'}),
  description: Flags.string({description: 'description shown in the console'}),
  creator: Flags.string({description: 'KubeSphere user recorded as the creator', default: 'admin'}),
}

export interface ClusterRecord {
  name: string
  labels: Record<string, string>
  provider: string | undefined
  description: string | undefined
  creator: string
}

/** NAME and the record flags, checked (a bad name or label is refused before anything is sent). */
export function clusterRecordOf(
  name: string,
  flags: {label: string[]; provider?: string | undefined; description?: string | undefined; creator: string},
): ClusterRecord {
  return {
    name: validateProxyClusterName(name, 'NAME'),
    labels: parseLabels(flags.label),
    provider: flags.provider,
    description: flags.description,
    creator: flags.creator,
  }
}
