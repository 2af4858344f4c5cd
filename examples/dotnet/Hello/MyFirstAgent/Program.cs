// SPDX-License-Identifier: MIT
// Hello world across two agent processes (scenario S2), the deploying side: Deploy starts a char
// stream, starts an instance of StreamPrinterAgent (served by another process) and hands it the
// stream. Exits once the printer has printed it.
//
//   PERPER_FABRIC_ENDPOINT=127.0.0.1:40400 dotnet examples/dotnet/bin/MyFirstAgent/MyFirstAgent.dll
using Perper;
using Perper.Application;
using Perper.Extensions;
using Perper.Model;

return await new PerperBuilder("MyFirstAgent").AddHandlers<MyFirstAgent>().StopAfterDeploy().RunAsync();

public class MyFirstAgent
{
    private static readonly int Delay = int.Parse(Environment.GetEnvironmentVariable("HELLO_DELAY_MS") ?? "100");

    public static async Task Deploy()
    {
        Console.WriteLine("Hello world from Deploy!");
        PerperStream stream = await Context.Stream("HelloWorldGenerator").StartAsync();
        PerperInstance printer = await Context.StartAgentAsync("StreamPrinterAgent");
        long printed = await printer.CallAsync<long>("StreamPrinter", stream);
        Console.WriteLine($"StreamPrinter printed {printed} characters");
        await printer.DestroyAsync();
    }

    public static async IAsyncEnumerable<string> HelloWorldGenerator()
    {
        Console.WriteLine("Hello world from HelloWorldGenerator!");
        foreach (char c in "Hello world through stream!")
        {
            await Task.Delay(Delay);
            yield return c.ToString();
        }
    }
}
