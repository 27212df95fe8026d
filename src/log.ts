import {redact} from './redact.js'

export const logLevels = ['error', 'warn', 'info', 'debug'] as const
export type LogLevel = (typeof logLevels)[number]
export const logFormats = ['text', 'json'] as const
export type LogFormat = (typeof logFormats)[number]

export interface LogSink {
  write(line: string): void
}

const stderrSink: LogSink = {write: (line) => process.stderr.write(line)}

/**
 * Progress, warnings and diagnostics: always on stderr (stdout carries results), always redacted, one line
 * per event. `json` format is for the long-running tunnel processes whose logs a collector parses.
 */
export class Logger {
  constructor(
    private level: LogLevel = 'info',
    private format: LogFormat = 'text',
    private readonly sink: LogSink = stderrSink,
    private readonly fields: Record<string, string | number | boolean> = {},
  ) {}

  configure(level: LogLevel, format: LogFormat = this.format): void {
    this.level = level
    this.format = format
  }

  /** A logger that adds fixed fields (component, cluster) to every line and shares this one's settings. */
  child(fields: Record<string, string | number | boolean>): Logger {
    const parent = this.root()
    const child = new Logger(parent.level, parent.format, parent.sink, {...this.fields, ...fields})
    child.parent = parent
    return child
  }

  enabled(level: LogLevel): boolean {
    const root = this.root()
    return logLevels.indexOf(level) <= logLevels.indexOf(root.level)
  }

  error(message: string, fields?: Record<string, unknown>): void {
    this.emit('error', message, fields)
  }

  warn(message: string, fields?: Record<string, unknown>): void {
    this.emit('warn', message, fields)
  }

  info(message: string, fields?: Record<string, unknown>): void {
    this.emit('info', message, fields)
  }

  debug(message: string, fields?: Record<string, unknown>): void {
    this.emit('debug', message, fields)
  }

  private parent: Logger | undefined

  private root(): Logger {
    return this.parent ?? this
  }

  private emit(level: LogLevel, message: string, fields: Record<string, unknown> = {}): void {
    if (!this.enabled(level)) return
    const all = {...this.fields, ...fields}
    const root = this.root()
    if (root.format === 'json') {
      const record = {time: new Date().toISOString(), level, msg: message, ...all}
      root.sink.write(redact(JSON.stringify(record)) + '\n')
      return
    }
    const extra = Object.entries(all)
      .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`)
      .join(' ')
    const prefix = level === 'info' ? '' : `${level}: `
    root.sink.write(redact(`${prefix}${message}${extra === '' ? '' : ' ' + extra}`) + '\n')
  }
}

export const log = new Logger()
