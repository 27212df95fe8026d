import {Command, Errors, type Interfaces} from '@oclif/core'

import {ExitCode, KsctlError} from '../errors.js'
import {log} from '../log.js'
import {redact, redactObject} from '../redact.js'
import {parseDuration} from './duration.js'
import type {DryRun} from '../k8s/dry-run.js'
import {dryRunOf, globalFlags, withDryRunValue} from './flags.js'
import {progress, spinnerStream} from './progress.js'
import {styleFor} from './style.js'

export type BaseFlags<T extends typeof Command> = Interfaces.InferredFlags<
  (typeof BaseCommand)['baseFlags'] & T['flags']
>
export type BaseArgs<T extends typeof Command> = Interfaces.InferredArgs<T['args']>

/** The `--json` shape of a failure. */
export interface ErrorJson {
  error: {
    code: string
    message: string
    exitCode: number
    context?: string
    object?: KsctlError['object']
    suggestions: string[]
  }
}

/**
 * The one base of every ksctl command: global flags, parsing, logging set-up, and the single place where
 * errors become a message, a JSON document and an exit code. Commands that talk to clusters extend
 * {@link ClusterCommand}, which adds the run's Kubernetes clients.
 */
export abstract class BaseCommand<T extends typeof Command> extends Command {
  static override enableJsonFlag = true
  static override baseFlags = globalFlags

  protected flags!: BaseFlags<T>
  protected args!: BaseArgs<T>
  /** `--timeout`, in milliseconds: each API request's time-out (0: none). */
  protected timeoutMs = 0
  /** `--timeout` when the user gave it: then also the limit of every wait, in place of the wait's default. */
  protected waitTimeoutMs: number | undefined

  override async init(): Promise<void> {
    await super.init()
    // A command without flags of its own has none here: oclif leaves the static undefined.
    const takesDryRun = Object.hasOwn((this.ctor.flags as object | undefined) ?? {}, 'dry-run')
    const {args, flags, metadata} = await this.parse(
      {
        flags: this.ctor.flags,
        baseFlags: (this.ctor as typeof BaseCommand).baseFlags,
        enableJsonFlag: this.ctor.enableJsonFlag,
        args: this.ctor.args,
        strict: this.ctor.strict,
      },
      takesDryRun ? withDryRunValue(this.argv) : this.argv,
    )
    this.flags = flags as BaseFlags<T>
    this.args = args as BaseArgs<T>
    log.configure(this.flags['log-level'], this.flags['log-format'])
    this.timeoutMs = parseDuration(this.flags.timeout, '--timeout')
    this.waitTimeoutMs = metadata.flags.timeout?.setFromDefault === true ? undefined : this.timeoutMs
    progress.configure(
      spinnerStream(process.stderr, {logFormat: this.flags['log-format'], json: this.jsonEnabled()}),
    )
  }

  /** `--dry-run` of a command that has it: false (a real run), 'client' or 'server'. */
  protected dryRunMode(): DryRun {
    return dryRunOf((this.flags as {'dry-run'?: 'client' | 'server' | 'none'})['dry-run'])
  }

  /** Writes a result to stdout unless `--json` is on (then the returned value is the output). */
  protected print(text: string): void {
    if (!this.jsonEnabled()) process.stdout.write(redact(text))
  }

  /** The `--json` document: the result with every credential shown as its fingerprint. */
  protected override toSuccessJson(result: unknown): unknown {
    return redactObject(result)
  }

  protected override catch(error: Error & {exitCode?: number}): Promise<never> {
    const failure = toKsctlError(error)
    // Undefined when the flags themselves failed to parse.
    const flags = this.flags as Partial<BaseFlags<T>> | undefined
    if (this.jsonEnabled()) {
      this.logJson(errorJson(failure))
    } else if (flags?.['log-format'] === 'json') {
      // A collector reading JSON lines (the tower processes) gets the error as one of them.
      log.error(failure.message, errorLogFields(failure))
    } else {
      process.stderr.write(renderError(failure))
    }
    this.exit(failure.exitCode)
  }
}

function toKsctlError(error: unknown): KsctlError {
  if (error instanceof KsctlError) return error
  if (error instanceof Errors.CLIError) {
    return new KsctlError(redact(error.message), {
      code: 'USAGE',
      exitCode: ExitCode.Usage,
      suggestions: error.suggestions ?? [],
    })
  }
  if (error instanceof Error && error.name === 'ExitPromptError') {
    return new KsctlError('interrupted', {code: 'INTERRUPTED'})
  }
  const message = error instanceof Error ? error.message : String(error)
  return new KsctlError(`unexpected error: ${redact(message)}`, {
    code: 'INTERNAL',
    cause: error,
    suggestions: ['run again with --log-level debug, and report it if it persists'],
  })
}

export function errorJson(error: KsctlError): ErrorJson {
  return {
    error: {
      code: error.code,
      message: redact(error.message),
      exitCode: error.exitCode,
      ...(error.context === undefined ? {} : {context: error.context}),
      ...(error.object === undefined ? {} : {object: error.object}),
      suggestions: error.suggestions.map(redact),
    },
  }
}

/** An error as the fields of a log line; the stack of its cause only at --log-level debug, as in text. */
export function errorLogFields(error: KsctlError): Record<string, unknown> {
  const fields: Record<string, unknown> = {...errorJson(error).error}
  // The message is the line's own.
  delete fields.message
  const stack = error.cause instanceof Error ? error.cause.stack : undefined
  return {...fields, ...(log.enabled('debug') && stack !== undefined && {stack: redact(stack)})}
}

export function renderError(error: KsctlError): string {
  const style = styleFor(process.stderr)
  const lines = [`${style.red.bold('error:')} ${redact(error.message)}`]
  for (const suggestion of error.suggestions) lines.push(`  ${style.dim('→')} ${redact(suggestion)}`)
  if (log.enabled('debug') && error.cause instanceof Error && error.cause.stack !== undefined) {
    lines.push(style.dim(redact(error.cause.stack)))
  }
  return lines.join('\n') + '\n'
}
