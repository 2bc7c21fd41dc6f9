// `npm run grade -- level-2 --submissions DIR`: every subfolder is a student. (Level 2 issue.)
import type { GradeArgs } from "./args.ts";
import { UsageError } from "./args.ts";

export async function gradeClass(_args: GradeArgs): Promise<number> {
  throw new UsageError("--submissions (grading a whole class) is not available yet: grade one student with --submission DIR");
}
