import {Flags} from '@oclif/core'

import type {DryRun} from '../k8s/dry-run.js'
import {logFormats, logLevels} from '../log.js'

export const outputFormats = ['text', 'yaml', 'json'] as const
export type OutputFormat = (typeof outputFormats)[number]

/** Flags every ksctl command has, shown under GLOBAL in help. */
export const globalFlags = {
  kubeconfig: Flags.string({
    description:
      'path to the kubeconfig file (default: $KUBECONFIG, merged as kubectl does, else ~/.kube/config)',
    helpGroup: 'GLOBAL',
  }),
  'log-level': Flags.option({
    description: 'how much progress and diagnostic output to write to stderr',
    options: logLevels,
    default: 'info' as const,
    helpGroup: 'GLOBAL',
  })(),
  'log-format': Flags.option({
    description: 'format of stderr log lines',
    options: logFormats,
    default: 'text' as const,
    helpGroup: 'GLOBAL',
  })(),
  // A string flag parsed by the base command: a static default keeps `--help` from loading the command.
  timeout: Flags.string({
    description:
      'time-out of each API request, connecting included (e.g. 30s, 5m; 0: none); when given, also the limit ' +
      'of each wait in place of its own default (see --wait)',
    default: '60s',
    helpGroup: 'GLOBAL',
  }),
}

/** The kubeconfig context of a command that works on one cluster. */
export const contextFlag = Flags.string({
  description: 'kubeconfig context to use (default: the current context)',
})

export const hostContextFlag = Flags.string({description: 'kubeconfig context of the host cluster'})
export const memberContextFlag = Flags.string({description: 'kubeconfig context of the member cluster'})

export const outputFlag = Flags.option({
  char: 'o',
  description: 'output format of the result on stdout',
  options: outputFormats,
  default: 'text' as const,
})()

/**
 * `--dry-run` in kubectl's forms: alone or `=client`, ksctl's preview; `=server`, every write sent with
 * dryRun=All; `=none`, a real run. oclif options always take a value, so the base command reads a bare
 * `--dry-run` as `--dry-run=client` (withDryRunValue) and commands ask `this.dryRunMode()`.
 */
export const dryRunFlag = Flags.option({
  description:
    'show what would change, as a diff per object, and change nothing. Alone or =client: computed by ksctl; ' +
    '=server: every write is sent to the API server as a dry run, so validation and admission run too',
  options: ['client', 'server', 'none'] as const,
  helpValue: '[client|server]',
})()

const DRY_RUN = '--dry-run'

/** `argv` with a bare `--dry-run` (before any `--`) written as `--dry-run=client`, as kubectl reads it. */
export function withDryRunValue(argv: string[]): string[] {
  const end = argv.indexOf('--')
  return argv.map((argument, index) =>
    argument === DRY_RUN && (end < 0 || index < end) ? `${DRY_RUN}=client` : argument,
  )
}

/** The mode of a parsed `--dry-run` value (undefined when the flag was not given). */
export function dryRunOf(value: 'client' | 'server' | 'none' | undefined): DryRun {
  return value === undefined || value === 'none' ? false : value
}

export const yesFlag = Flags.boolean({char: 'y', description: 'do not ask for confirmation', default: false})
