/**
 * Loupe expressions: the broker evaluates them itself, reading the target only through Runtime.getProperties,
 * so V8 never runs a user's expression (DESIGN.md, "Evaluation model"). evaluate.ts has the entry points
 * (expression, condition, logpoint); sessionEvaluator.ts is the session's handle on them.
 */
export { defaultEvalBudget, LoupeRefusal, type EvalBudget } from './budget';
export {
  evaluateCondition,
  evaluateLogpoint,
  evaluateLoupe,
  loupeRefusalText,
  toEvaluateResponse,
  type ConditionVerdict,
  type LogpointTemplate,
  type LoupeCost,
  type LoupeEvalOptions,
  type LoupeOutcome,
} from './evaluate';
export { parseLoupeExpression } from './parse';
export { redactionContextOf, type RedactionContext } from './redaction';
export { TargetReader, type CdpSend } from './reader';
export { SessionEvaluator, type SessionEvaluatorOptions } from './sessionEvaluator';
