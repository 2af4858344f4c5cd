// SPDX-License-Identifier: MIT
// An agent using the Perper package: Deploy calls Greet on its own instance, through the Fabric,
// and prints the answer.
//
//   PERPER_FABRIC_ENDPOINT=127.0.0.1:40400 dotnet run
using Perper;
using Perper.Application;

return await new PerperBuilder("Greeter").AddHandlers<Greeter>().StopAfterDeploy().RunAsync();

public class Greeter
{
    public static string Greet(string name) => $"Hello, {name}!";

    public static async Task Deploy() => Console.WriteLine(await Context.CallAsync<string>("Greet", "world"));
}
